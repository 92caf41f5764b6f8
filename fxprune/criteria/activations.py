"""Data-driven criteria: activation statistics over calibration batches.

A class's activations are read where the channel *ends*: at the inputs of the nodes that consume
it (a conv's or linear layer's input columns, a pooling-to-classifier edge), its *sink* tensors.
Removing a channel means its sink tensors lose that channel, so:

- ``zero_channel``: the maximum |activation| at the sinks over all calibration data. A score of
  exactly 0 means the channel is zero wherever it is consumed (a ReLU that never fires): removing
  it leaves the outputs unchanged on that data.
- ``taylor``: first-order Taylor estimate of the loss change when the channel is removed,
  ``|sum over sinks and positions of a * dL/da|`` per sample, averaged over samples (Molchanov et
  al.); needs targets (batches of ``(inputs, targets)``) or ``loss_fn``.
- ``attention``: the mean value of the channel-attention gates (a tensor broadcast-multiplied
  onto a feature map over its spatial axes: squeeze-excitation, CBAM-style channel attention).
  Classes without a gate are scored by their mean |activation| at the sinks (logged).

Calibration data: an iterable of batches, each an input tensor, a tuple of inputs, or a pair
``(inputs, targets)`` where inputs is a tensor or tuple of tensors. The traced eval graph is run
in eval mode; the caller's model is not changed (no gradients land on its parameters).
"""

from __future__ import annotations

import logging

import numpy as np

from ..graph.channel_graph import Group
from .base import ScoringContext, register_criterion
from .calibration import collect, gates, sinks, split_batch  # noqa: F401  (re-exported)

__all__ = ["attention", "taylor", "zero_channel"]

log = logging.getLogger(__name__)


def _from_stat(group: Group, stat: np.ndarray) -> np.ndarray:
    return stat[group.classes]


@register_criterion("zero_channel", needs_data=True, options=())
def zero_channel(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Max |activation| where the channel is consumed, over the calibration data (0: a channel
    that is always zero there — removing it is exact on that data)."""
    return _from_stat(group, ctx.activation_stat("zero_channel"))


@register_criterion("taylor", needs_data=True, options=())
def taylor(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Mean over samples of |sum_{sinks, positions} a * dL/da| (first-order loss change)."""
    return _from_stat(group, ctx.activation_stat("taylor"))


@register_criterion("attention", needs_data=True, options=())
def attention(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Mean channel-attention gate value; channels without a gate: mean |activation| at sinks."""
    gate = ctx.activation_stat("gate_mean")
    gated = np.zeros(ctx.cg.uf.n, dtype=bool)
    for entries in gates(ctx).values():
        for f, _ in entries:
            gated[ctx.cg.roots[f.ids.ravel()]] = True
    mine = gated[group.classes]
    if mine.all():
        return gate[group.classes]
    if mine.any():
        log.info("attention: group %s is only partly gated; ungated channels scored by mean |activation|", group.key)
    else:
        log.info("attention: group %s has no attention gate; scored by mean |activation|", group.key)
    fallback = ctx.activation_stat("mean_abs")[group.classes]
    return np.where(mine, gate[group.classes], fallback)
