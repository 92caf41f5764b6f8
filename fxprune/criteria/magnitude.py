"""Weight-based criteria: l1, l2, FPGM, BN scale. Every weight that disappears with a channel
counts (producer rows, consumer columns, norm entries), combined by the plan's reduction."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from ..graph.channel_graph import Group, ParamAxis
from .base import ScoringContext, register_criterion

__all__ = ["bn_scale", "fpgm", "geometric_median", "l1", "l2"]

log = logging.getLogger(__name__)

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@register_criterion("l1")
def l1(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Sum of |w| over the channel's producer rows, consumer columns and norm entries."""
    return ctx.accumulate(group, "abs")


@register_criterion("l2")
def l2(group: Group, ctx: ScoringContext) -> np.ndarray:
    """L2 norm of the concatenation of all weights that disappear with the channel ("sum"), or
    the mean / max of the per-tensor norms."""
    return ctx.reduce(group, ctx.per_member(group, lambda k: ctx.per_position(k, "sq")), np.sqrt)


def geometric_median(x: torch.Tensor, iters: int = 500, tol: float = 1e-12) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of
    ``x`` (float64). Weiszfeld creeps slowly towards a median that sits on a data point, so the
    data point nearest the iterate is tested with the optimality condition at the end."""
    y = x.mean(0)
    sq = (x * x).sum(1)

    def dist(p: torch.Tensor) -> torch.Tensor:
        return (sq - 2 * (x @ p) + (p * p).sum()).clamp(min=0).sqrt()

    for _ in range(iters):
        w = 1.0 / dist(y).clamp(min=1e-12)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        done = (y_new - y).norm() <= tol * (1 + y.norm())
        y = y_new
        if done:
            break
    d = dist(y)
    i = int(d.argmin())
    at = dist(x[i]) <= 1e-12 * (1 + x[i].norm())
    others = x[~at]
    if others.numel() == 0:
        return x[i]
    diff = others - x[i]
    pull = (diff / diff.norm(dim=1, keepdim=True)).sum(0).norm()
    if pull <= int(at.sum()):  # the subgradient at x[i] contains 0: x[i] is a median
        return x[i]
    return y


def _fpgm_distances(ctx: ScoringContext, key: ParamAxis) -> np.ndarray:
    hit = ctx._cache.get((key, "fpgm"))
    if hit is None:
        name, axis = key
        w = ctx.tensor(name).double().movedim(axis, 0)
        x = w.reshape(w.shape[0], -1)
        gm = geometric_median(x)
        hit = ctx._cache[(key, "fpgm")] = (x - gm).norm(dim=1).cpu().numpy()
    return hit


@register_criterion("fpgm")
def fpgm(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Filter pruning via geometric median: for every member tensor axis (the layer's filters,
    or the next layer's input columns), the distance of the channel's slice to the geometric
    median of all slices of that axis. A channel near the median is replaceable by the others
    and scores low. Member distances are summed ("sum"), averaged or maxed."""
    return ctx.reduce(group, ctx.per_member(group, lambda k: _fpgm_distances(ctx, k)))


def _norm_scale_axes(group: Group, ctx: ScoringContext) -> list[ParamAxis]:
    out = []
    for key in group.members:
        name, axis = key
        if axis == 0 and name.endswith(".weight") and isinstance(ctx.module_of(name), _NORMS) \
                and key[0] in ctx.parameters:
            out.append(key)
    return out


@register_criterion("bn_scale")
def bn_scale(group: Group, ctx: ScoringContext) -> np.ndarray:
    """|gamma| of the channel's normalisation layers (Network Slimming), reduced over the norm
    layers of the group. A group without an affine norm layer (a plain linear hidden layer)
    falls back to l1 of its weights (logged)."""
    keys = _norm_scale_axes(group, ctx)
    if not keys:
        log.info("bn_scale: group %s has no normalisation scale; scored by l1", group.key)
        return l1(group, ctx)
    gamma = lambda k: ctx.tensor(k[0]).abs().double().cpu().numpy()  # noqa: E731
    return ctx.reduce(group, ctx.per_member(group, gamma, keys))
