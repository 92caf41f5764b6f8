"""The criterion registry and what a criterion sees (``ScoringContext``); see ``fxprune.criteria``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..errors import PlanError
from ..graph.channel_graph import ChannelGraph, Group, ParamAxis
from ..graph.costmodel import macs_model, params_model
from ..graph.latency import latency_model
from ..capture.meta import submodule
from .calibration import collect

__all__ = ["CRITERIA", "CriterionSpec", "REDUCTIONS", "ScoringContext", "register_criterion", "score", "score_groups"]

log = logging.getLogger(__name__)

REDUCTIONS = ("sum", "mean", "max")


@dataclass(frozen=True)
class CriterionSpec:
    """A registered criterion.

    network: ``fn(groups, ctx) -> {group index: scores}`` (needs every group at once) instead
        of ``fn(group, ctx) -> scores``.
    comparable: scores are already comparable across groups; global ranking uses them as they
        are instead of dividing each group's scores by the group's mean.
    cost_aware: scores depend on the current widths (``ctx.keep``); a budget search rescores
        after every step.
    needs_data: requires ``calibration_data``.
    default_scope: the plan scope when the plan names none.
    """

    name: str
    fn: Callable[..., Any]
    network: bool = False
    comparable: bool = False
    cost_aware: bool = False
    needs_data: bool = False
    options: tuple[str, ...] = ("reduction",)
    default_scope: str = "local"

    def check_options(self, options: Mapping[str, Any]) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            raise PlanError(f"criterion {self.name!r} has no option(s) {sorted(unknown)}; it takes {list(self.options)}")
        how = options.get("reduction", "sum")
        if how not in REDUCTIONS:
            raise PlanError(f"reduction must be one of {REDUCTIONS}, got {how!r}")


CRITERIA: dict[str, CriterionSpec] = {}


def register_criterion(name: str, *, network: bool = False, comparable: bool = False, cost_aware: bool = False,
                       needs_data: bool = False, options: tuple[str, ...] = ("reduction",),
                       default_scope: str = "local") -> Callable:
    def deco(fn: Callable) -> Callable:
        CRITERIA[name] = CriterionSpec(name, fn, network, comparable, cost_aware, needs_data, options, default_scope)
        return fn

    return deco


class ScoringContext:
    """What criteria see: the channel graph, the traced eval graph, the plan's options, current
    widths (``keep``, a 0/1 vector over ids; all ones outside budget searches), calibration data,
    and caches (per-axis reductions, cost models, activation statistics)."""

    def __init__(self, cg: ChannelGraph, *, parameters: set[str], seed: int = 0, model: Any = None,
                 data: Any = None, gm: fx.GraphModule | None = None, options: Mapping[str, Any] | None = None,
                 loss_fn: Callable | None = None, weights: Callable[[str], torch.Tensor] | None = None) -> None:
        self.cg, self.parameters, self.seed, self.model, self.data = cg, parameters, seed, model, data
        self.weights = weights  # where tensor values come from when the graph's own are on the meta device
        self.gm = gm if gm is not None else cg.graph_modules[0]
        self.options = dict(options or {})
        self.loss_fn = loss_fn
        self.keep = np.ones(cg.uf.n)
        self.latency_backend = "ort"  # where a latency budget's table is measured (the plan's backend)
        self.latency_step = 1  # ... and at multiples of which widths
        self._cache: dict[tuple[ParamAxis, str], np.ndarray] = {}
        self._costs: dict[str, Any] = {}
        self.stats: dict[str, np.ndarray] = {}  # activation statistics per kind, over ids

    # -- weights ----------------------------------------------------------------------------
    def tensor(self, name: str) -> torch.Tensor:
        """The values of parameter/buffer ``name``: the model's own, or, for a model on the meta
        device, read from the checkpoint ``weights`` (one tensor at a time)."""
        t = self.cg.tensors[name]
        if t.device.type != "meta":
            return t.detach()
        if self.weights is None:
            raise PlanError(f"tensor {name!r} is on the meta device: this criterion reads weights, so pass "
                            "weights=<directory of safetensors shards> to fxprune.resolve")
        return self.weights(name)

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
            w = self.tensor(name)
            w = w.abs() if stat == "abs" else w.float().square()
            for axis in range(w.ndim):
                if (name, axis) in self.cg.param_axes:
                    dims = [d for d in range(w.ndim) if d != axis]
                    self._cache[((name, axis), stat)] = (w.sum(dim=dims) if dims else w).double().cpu().numpy()
            hit = self._cache[(key, stat)]
        return hit

    def per_member(self, group: Group, values: Callable[[ParamAxis], np.ndarray],
                   keys: Iterable[ParamAxis] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """For every member weight axis (or ``keys``): (per-class sum of ``values(key)`` over the
        axis positions of each class, bool per class: does this member hold the class)."""
        out = []
        wanted = None if keys is None else set(keys)
        for key, pos, cls in self.weight_axes(group):
            if wanted is not None and key not in wanted:
                continue
            per = np.zeros(group.size)
            np.add.at(per, cls, values(key)[pos])
            held = np.zeros(group.size, dtype=bool)
            held[cls] = True
            out.append((per, held))
        return out

    def reduce(self, group: Group, members: list[tuple[np.ndarray, np.ndarray]],
               finish: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> np.ndarray:
        """Combine per-member values by the plan's reduction; ``finish`` maps a summed value to
        the criterion's value (``sqrt`` for l2), applied before mean/max and after sum."""
        how = self.options.get("reduction", "sum")
        if not members:
            return np.zeros(group.size)
        if how == "sum":
            return finish(np.sum([m for m, _ in members], axis=0))
        vals = np.stack([finish(m) for m, _ in members])
        held = np.stack([h for _, h in members])
        if how == "mean":
            return (vals * held).sum(0) / np.maximum(held.sum(0), 1)
        return np.where(held, vals, -np.inf).max(0).clip(min=0)

    def accumulate(self, group: Group, stat: str) -> np.ndarray:
        """Per-class sum of ``per_position(stat)`` over every weight axis of the group."""
        return self.reduce(group, self.per_member(group, lambda k: self.per_position(k, stat)))

    def module_of(self, param: str) -> nn.Module | None:
        """The module owning parameter ``param`` in the traced graphs (None if not found)."""
        owner = param.rsplit(".", 1)[0] if "." in param else ""
        for gm in self.cg.graph_modules:
            try:
                return submodule(gm, owner)
            except KeyError:
                continue
        return None

    # -- costs ------------------------------------------------------------------------------
    def cost_model(self, kind: str):
        """The MACs ("macs"), parameter ("params") or latency ("latency", measured on
        ``latency_backend``) model of the channel graph (built once)."""
        if kind not in self._costs:
            if kind == "latency":
                self._costs[kind] = latency_model(self.cg, self.gm, backend=self.latency_backend,
                                                    step=self.latency_step)
            else:
                self._costs[kind] = macs_model(self.cg, self.gm) if kind == "macs" else params_model(self.cg, self.model)
        return self._costs[kind]

    # -- data -------------------------------------------------------------------------------
    def activation_stat(self, kind: str) -> np.ndarray:
        """Per-id activation statistic over the calibration data (see ``activations``)."""
        if kind not in self.stats:
            if self.data is None:
                raise PlanError("this criterion needs calibration data: pass calibration_data=<iterable of batches> "
                                "to fxprune.compile / fxprune.resolve (a batch is an input tensor, or (inputs, targets))")
            self.stats[kind] = collect(self, kind)
        return self.stats[kind]


def score_groups(name: str, groups: list[Group], ctx: ScoringContext) -> dict[int, np.ndarray]:
    """Scores of every group under criterion ``name``, checked for shape and finiteness."""
    spec = CRITERIA[name]
    if spec.network:
        raw = spec.fn(groups, ctx)
    else:
        raw = {g.index: spec.fn(g, ctx) for g in groups}
    out = {}
    for g in groups:
        s = np.asarray(raw[g.index], dtype=np.float64)
        if s.shape != (g.size,):
            raise AssertionError(f"criterion {name} returned shape {s.shape} for a group of {g.size}")
        if not np.isfinite(s).all():
            raise PlanError(f"criterion {name!r} gave non-finite scores for group {g.key} "
                            f"(modules {g.producer_modules[:3]})")
        out[g.index] = s
    return out


def score(name: str, group: Group, ctx: ScoringContext) -> np.ndarray:
    return score_groups(name, [group], ctx)[group.index]
