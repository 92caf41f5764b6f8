"""Channel-aligned modules: any module whose tensor inputs and output share one channel axis
(axis 1) position by position, whatever it computes along the other axes.

Feature transforms of style transfer are the example: AdaIN, WCT and ArtNet's S² mix *spatial*
positions and read whole-channel statistics (means, covariances, patches), but channel ``c`` of
the content features, channel ``c`` of the style features and channel ``c`` of the output are the
same channel. Subclass ``ChannelAligned``, register it with ``register_channel_aligned``, and the compiler
traces the module as a leaf, unions axis 1 of every tensor input with the output, and prunes
through it. The module must be parameter-free and accept any channel count; its forward must give
zero output channels where every input is zero in that channel (what removing it means: the
masked-dense reference zeroes the class on every tensor it lives on) — the compiler's
verification checks that on the example inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from ..factors import Factors
from .context import CostContext, RuleContext
from .registry import REGISTRY, Example, OpRegistry, OpRule, rand

__all__ = ["ChannelAligned", "GramMix", "builtin_aligned_classes", "register_channel_aligned"]


def channel_aligned(ctx: RuleContext) -> Factors:
    tensors = [a for a in list(ctx.node.args) + list(ctx.node.kwargs.values()) if isinstance(a, fx.Node)]
    out_shape = ctx.out_shape
    if len(out_shape) < 2:
        for t in tensors:
            ctx.pin_factors(ctx.factors(t), "channel-aligned module without a channel axis in its output")
        return ()
    carried = []
    for t in tensors:
        s = ctx.shape(t)
        for f in ctx.factors(t):
            if f.axes == (1,) and s is not None and len(s) >= 2 and s[1] == out_shape[1]:
                carried.append(f)
            else:
                ctx.pin(f.ids, "channel-aligned module: channels only pass on axis 1 of equal width")
    if not carried:
        return ()
    for f in carried[1:]:
        ctx.union(carried[0].ids, f.ids)
    return (carried[0],)


class ChannelAligned(nn.Module):
    """Base class of channel-aligned modules (see the module docstring). Register each subclass
    with ``register_channel_aligned`` (a class decorator) so the compiler prunes through it.

    ``macs_terms(shapes)`` tells the cost counting what one forward costs: a list of ``(MACs at
    these input shapes, degree)`` where the term scales as (kept fraction of the channels) **
    degree (a matmul over channels x channels has degree 2). The default is no MACs."""

    def macs_terms(self, shapes: Sequence[tuple[int, ...] | None]) -> list[tuple[float, int]]:
        return []


def _aligned_macs(c: CostContext) -> list[tuple[float, list]]:
    shapes = [c.shape(a) for a in c.node.args if isinstance(a, fx.Node)]
    channel = c.axis_ids(c.node, 1)
    return [(base, channel * degree) for base, degree in c.module().macs_terms(shapes)]


_RULE = OpRule("channel_aligned", channel_aligned, cost=_aligned_macs)
_ALIGNED: list[type] = []


def register_channel_aligned(cls: type, registry: OpRegistry = REGISTRY) -> type:
    """Register a ``ChannelAligned`` subclass with the op registry (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, ChannelAligned)):
        raise TypeError(f"register_channel_aligned takes a ChannelAligned subclass, got {cls!r}")
    registry.register(_RULE, modules=[cls])
    if cls not in _ALIGNED:
        _ALIGNED.append(cls)
    return cls


def builtin_aligned_classes() -> list[type]:
    """fxprune's own registered channel-aligned modules (stored as data in ``.fxp`` files)."""
    return [c for c in _ALIGNED if c.__module__.split(".")[0] == "fxprune"]


@register_channel_aligned
class GramMix(ChannelAligned):
    """``G = x x^T / HW`` over channels, then ``G x``: a channel-aligned module with channel x
    channel MACs (degree 2). The example of the channel-aligned rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        gram = flat @ flat.transpose(1, 2) / flat.shape[-1]
        return (gram @ flat).view_as(x)

    def macs_terms(self, shapes: Sequence[tuple[int, ...] | None]) -> list[tuple[float, int]]:
        b, ch = shapes[0][:2]
        hw = math.prod(shapes[0][2:])
        return [(2 * b * ch * ch * hw, 2)]


_RULE.example = lambda g: Example(GramMix(), (rand(g, 2, 6, 3, 3),))
