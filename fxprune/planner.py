"""Resolve a Plan against a channel graph: score every group, choose the kept channels."""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .criteria import ScoringContext, score
from .errors import PlanError
from .graph.channels import FACTORS, ChannelGraph, Group, iter_factors
from .plan import GroupChoice, Plan, Resolution

log = logging.getLogger(__name__)


def _module_of(param: str) -> str:
    return param.rsplit(".", 1)[0] if "." in param else ""


def _matches(module: str, names: Iterable[str]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def check_names(plan: Plan, module_names: set[str]) -> None:
    for kind, names in (("ignore", plan.ignore), ("overrides", plan.overrides)):
        for name in names:
            if name not in module_names:
                close = difflib.get_close_matches(name, [m for m in module_names if m], n=5, cutoff=0.3)
                hint = f" Did you mean one of {close}?" if close else ""
                raise PlanError(f"{kind} names `{name}`, which is not a module of this model.{hint}")


def keep_count(size: int, n_pinned: int, ratio: float, plan: Plan) -> int:
    """Channels a group of ``size`` keeps at ``ratio`` sparsity, honouring min_channels,
    the pinned channels and round_to (rounded up, capped at the dense width)."""
    k = size - math.floor(ratio * size + 1e-9)
    k = min(size, max(k, plan.min_channels, n_pinned, 1))
    return min(size, -(-k // plan.round_to) * plan.round_to)


def choose(scores: np.ndarray, pinned: np.ndarray, k: int) -> list[int]:
    """The pinned classes plus the ``k - #pinned`` best-scoring others (ties: lower index)."""
    free = np.nonzero(~pinned)[0]
    n_free = k - int(pinned.sum())
    order = free[np.lexsort((free, -scores[free]))][:max(n_free, 0)]
    return sorted(np.concatenate([np.nonzero(pinned)[0], order]).tolist())


def resolve(plan: Plan, cg: ChannelGraph, *, module_names: set[str], parameters: set[str],
            model: Any = None, data: Any = None) -> Resolution:
    check_names(plan, module_names)
    groups = cg.groups()
    pinned = {g.index: g.pinned.copy() for g in groups}
    if plan.ignore:
        for g in groups:
            for key in g.members:
                if _matches(_module_of(key[0]), plan.ignore):
                    _, cls = cg.positions(g, key)
                    pinned[g.index][cls] = True
    ratio: dict[int, float] = {}
    for name, value in plan.overrides.items():
        hit = [g for g in groups if _matches_any(g.producer_modules, name)] or \
              [g for g in groups if any(_matches(_module_of(k[0]), [name]) for k in g.members)]
        if not hit:
            log.warning("overrides[%r]: that module produces no prunable channels", name)
        for g in hit:
            if g.index in ratio and ratio[g.index] != value:
                log.warning("group %s gets several overrides; using the smallest sparsity", g.key)
            ratio[g.index] = min(value, ratio.get(g.index, value))
    active = [g for g in groups if not g.pinned.all()]
    ctx = ScoringContext(cg, parameters=parameters, seed=plan.seed, model=model, data=data)
    scores = {}
    for g in active:
        s = score(plan.criterion, g, ctx)
        if not np.isfinite(s).all():
            raise PlanError(f"criterion {plan.criterion!r} gave non-finite scores for group {g.key} "
                            f"(modules {g.producer_modules[:3]})")
        scores[g.index] = s
    counts: dict[int, int] = {}
    if plan.scope == "global":
        counts.update(_global_counts(plan, [g for g in active if g.index not in ratio], scores, pinned))
    for g in active:
        if g.index not in counts:
            counts[g.index] = keep_count(g.size, int(pinned[g.index].sum()), ratio.get(g.index, plan.sparsity), plan)
    keep = {g.index: choose(scores[g.index], pinned[g.index], counts[g.index]) for g in active}
    _keep_every_tensor_nonempty(cg, keep, scores)
    choices = {g.key: GroupChoice(g.size, keep[g.index], g.producer_modules, g.signature) for g in active}
    return Resolution(choices, plan)


def _keep_every_tensor_nonempty(cg: ChannelGraph, keep: dict[int, list[int]], scores: dict[int, np.ndarray]) -> None:
    """A tensor whose channels all went (one output of a split, say) would leave a zero-width
    layer behind: give it back its best-scoring channel, until no tensor is empty."""
    groups = cg.groups()
    alive = np.ones(cg.uf.n, dtype=bool)
    for gi, kept in keep.items():
        g = groups[gi]
        dead = np.ones(g.size, dtype=bool)
        dead[kept] = False
        alive[g.classes[dead]] = False
    factors = [f for gm in cg.graph_modules for n in gm.graph.nodes for f in iter_factors(n.meta.get(FACTORS))]
    changed = True
    while changed:
        changed = False
        for f in factors:
            roots = cg.roots[f.ids]
            if alive[roots].any():
                continue
            cls = np.unique(roots)
            cls = cls[cg.group_of[cls] >= 0]
            best = max(cls, key=lambda c: scores[int(cg.group_of[c])][cg.class_index[c]])
            gi = int(cg.group_of[best])
            keep[gi] = sorted(keep[gi] + [int(cg.class_index[best])])
            alive[best] = True
            changed = True
            log.info("group %s: kept one more channel so that a tensor does not become empty", groups[gi].key)


def _matches_any(modules: list[str], name: str) -> bool:
    return any(_matches(m, [name]) for m in modules)


def _global_counts(plan: Plan, groups: list[Group], scores: dict[int, np.ndarray],
                   pinned: dict[int, np.ndarray]) -> dict[int, int]:
    """One ranking across groups. Scores are divided by their group's mean so that layers with
    larger weights do not dominate: a channel goes when it is weak relative to its own layer."""
    if not groups:
        return {}
    total = sum(g.size for g in groups)
    target = math.floor(plan.sparsity * total + 1e-9)
    norm, gid, floor = [], [], {}
    for g in groups:
        s, p = scores[g.index], pinned[g.index]
        mean = s[~p].mean() if (~p).any() else 1.0
        s = s / mean if mean > 0 else np.ones_like(s)
        norm.append(s[~p])
        gid.append(np.full(int((~p).sum()), g.index))
        floor[g.index] = max(plan.min_channels, int(p.sum()), 1)
    flat, owner = np.concatenate(norm), np.concatenate(gid)
    removed = {g.index: 0 for g in groups}
    size = {g.index: g.size for g in groups}
    done = 0
    for i in np.argsort(flat, kind="stable"):
        if done >= target:
            break
        g = int(owner[i])
        if size[g] - removed[g] - 1 >= floor[g]:
            removed[g] += 1
            done += 1
    return {g.index: keep_count(g.size, int(pinned[g.index].sum()), removed[g.index] / g.size, plan)
            for g in groups}
