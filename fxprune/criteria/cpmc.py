"""CPMC: channel pruning via multi-criteria based on weight dependency.

A channel's importance has three aspects, each read off the channel graph:

- V, *weight value*: the L2 norm of every weight that disappears with the channel — its filter
  rows and the partial weights of every consumer (the next layers' input columns, through
  residual and concat groups) plus its norm entries (criterion ``l2`` with the plan's reduction);
- C, *computational cost*: the MACs its removal saves at the current widths (the gradient of
  the MACs cost model: a conv input column saves ``kept_out * k * H * W`` MACs);
- P, *parameter quantity*: the parameters its removal saves at the current widths.

Each aspect is normalised globally, across all prunable channels of the network, to [0, 1]
(min-max: ``x^ = (x - min) / (max - min)``), and combined as

    importance = w_V * V^ - w_C * C^ - w_P * P^        (default weights 1.0, 0.5, 0.5)

so a channel is kept for carrying large weights and is removed sooner the more MACs and
parameters it costs. Configure with ``Plan(criterion="cpmc", criterion_options={"weights": [wV,
wC, wP]})``. The scores are comparable across layers (global ranking uses them as they are), and
the costs depend on the current widths: a budget search (``Plan(flops=...)``) rescores after
every step, so the costs follow the network as it shrinks.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..graph.channel_graph import Group
from .base import ScoringContext, register_criterion
from .magnitude import l2

__all__ = ["DEFAULT_WEIGHTS", "aspects", "cpmc"]

DEFAULT_WEIGHTS = (1.0, 0.5, 0.5)


def _minmax(parts: dict[int, np.ndarray], mask: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    live = [v[mask[k]] for k, v in parts.items() if mask[k].any()]
    if not live:
        return {k: np.zeros_like(v) for k, v in parts.items()}
    allv = np.concatenate(live)
    lo, hi = float(allv.min()), float(allv.max())
    span = hi - lo
    return {k: (v - lo) / span if span > 0 else np.zeros_like(v) for k, v in parts.items()}


def aspects(groups: list[Group], ctx: ScoringContext) -> tuple[dict[int, np.ndarray], ...]:
    """(V, C, P) per group, raw (before normalisation), at the current widths ``ctx.keep``."""
    macs = ctx.cost_model("macs").marginal(ctx.keep)
    params = ctx.cost_model("params").marginal(ctx.keep)
    value = {g.index: l2(g, ctx) for g in groups}
    cost = {g.index: macs[g.classes] for g in groups}
    size = {g.index: params[g.classes] for g in groups}
    return value, cost, size


@register_criterion("cpmc", network=True, comparable=True, cost_aware=True, options=("reduction", "weights"),
                    default_scope="global")
def cpmc(groups: list[Group], ctx: ScoringContext) -> dict[int, np.ndarray]:
    weights = ctx.options.get("weights", DEFAULT_WEIGHTS)
    if len(weights) != 3 or any(not isinstance(w, (int, float)) or w < 0 for w in weights):
        raise PlanError(f"cpmc weights are three non-negative numbers [value, macs, params], got {weights!r}")
    w_v, w_c, w_p = (float(w) for w in weights)
    value, cost, size = aspects(groups, ctx)
    mask = {g.index: ~g.pinned & (ctx.keep[g.classes] > 0) for g in groups}
    v, c, p = _minmax(value, mask), _minmax(cost, mask), _minmax(size, mask)
    return {g.index: w_v * v[g.index] - w_c * c[g.index] - w_p * p[g.index] for g in groups}
