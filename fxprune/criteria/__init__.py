"""Importance criteria: pure functions ``(group, ScoringContext) -> score per class``.

Every criterion scores a channel with *all* the weights that disappear with it: producer rows,
consumer columns and norm entries of every member parameter axis of its group. Higher score =
more important. Register new ones with ``@register_criterion("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..graph.channels import ChannelGraph, Group, ParamAxis

Criterion = Callable[[Group, "ScoringContext"], np.ndarray]
CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str) -> Callable[[Criterion], Criterion]:
    def deco(fn: Criterion) -> Criterion:
        CRITERIA[name] = fn
        return fn

    return deco


class ScoringContext:
    """Read-only view of a group's weights for criteria, with per-axis reductions cached (a
    consumer after a concat touches many groups; its column norms are computed once)."""

    def __init__(self, cg: ChannelGraph, *, parameters: set[str], seed: int = 0, model: Any = None,
                 data: Any = None) -> None:
        self.cg, self.parameters, self.seed, self.model, self.data = cg, parameters, seed, model, data
        self._cache: dict[tuple[ParamAxis, str], np.ndarray] = {}

    def weight_axes(self, group: Group) -> list[tuple[ParamAxis, np.ndarray, np.ndarray]]:
        """(parameter axis, positions, class index at each position) for every parameter
        (not buffer) axis holding channels of ``group``."""
        out = []
        for key in group.members:
            if key[0] in self.parameters:
                pos, cls = self.cg.positions(group, key)
                out.append((key, pos, cls))
        return out

    def per_position(self, key: ParamAxis, stat: str) -> np.ndarray:
        """``sum |w|`` ("abs") or ``sum w^2`` ("sq") over every axis of the tensor but ``key``'s.
        Computed for all channel axes of the tensor at once (one |w| pass per tensor)."""
        hit = self._cache.get((key, stat))
        if hit is None:
            name = key[0]
            w = self.cg.tensors[name].detach()
            w = w.abs() if stat == "abs" else w.float().square()
            for axis in range(w.ndim):
                if (name, axis) in self.cg.param_axes:
                    dims = [d for d in range(w.ndim) if d != axis]
                    self._cache[((name, axis), stat)] = (w.sum(dim=dims) if dims else w).double().cpu().numpy()
            hit = self._cache[(key, stat)]
        return hit

    def accumulate(self, group: Group, stat: str) -> np.ndarray:
        """Per-class sum of ``per_position(stat)`` over every weight axis of the group."""
        total = np.zeros(group.size)
        for key, pos, cls in self.weight_axes(group):
            np.add.at(total, cls, self.per_position(key, stat)[pos])
        return total


def score(name: str, group: Group, ctx: ScoringContext) -> np.ndarray:
    s = np.asarray(CRITERIA[name](group, ctx), dtype=np.float64)
    if s.shape != (group.size,):
        raise AssertionError(f"criterion {name} returned shape {s.shape} for a group of {group.size}")
    return s


from . import magnitude, random  # noqa: E402,F401  (registration)

__all__ = ["CRITERIA", "ScoringContext", "register_criterion", "score"]
