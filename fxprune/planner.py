"""Resolve a Plan against a channel graph: score every group, choose the kept channels."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .criteria import CRITERIA, CriterionSpec, ScoringContext, score_groups
from .errors import PlanError
from .graph.factors import FACTORS, iter_factors
from .graph.channel_graph import ChannelGraph, Group
from .graph.latency import backend_step
from .plan import GroupChoice, Plan, Resolution

__all__ = ["check_names", "choose", "concrete_step", "floor_count", "global_removals", "keep_count", "resolution_from_keep", "resolve"]

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


def floor_count(size: int, n_pinned: int, plan: Plan, *, capped: bool = True) -> int:
    """The fewest channels a group of ``size`` may keep: min_channels, its pinned channels and,
    when ``capped`` (global ranking, budgets), what max_sparsity leaves; never more than the group."""
    cap = math.ceil((1.0 - plan.max_sparsity) * size - 1e-9) if capped else 0
    return min(size, max(plan.min_channels, n_pinned, 1, cap))


def keep_count(size: int, n_pinned: int, ratio: float, plan: Plan) -> int:
    """Channels a group of ``size`` keeps at ``ratio`` sparsity, honouring min_channels, the
    pinned channels and round_to (rounded up, capped at the dense width)."""
    k = max(size - math.floor(ratio * size + 1e-9), floor_count(size, n_pinned, plan, capped=False))
    step = concrete_step(plan).round_to
    return min(size, -(-k // step) * step)


def choose(scores: np.ndarray, pinned: np.ndarray, k: int) -> list[int]:
    """The pinned classes plus the ``k - #pinned`` best-scoring others (ties: lower index)."""
    free = np.nonzero(~pinned)[0]
    n_free = k - int(pinned.sum())
    order = free[np.lexsort((free, -scores[free]))][:max(n_free, 0)]
    return sorted(np.concatenate([np.nonzero(pinned)[0], order]).tolist())


def resolve(plan: Plan, cg: ChannelGraph, *, module_names: set[str], parameters: set[str],
            model: Any = None, data: Any = None, gm: Any = None, loss_fn: Any = None,
            adjust: Callable[[dict[int, np.ndarray]], dict[int, np.ndarray]] | None = None,
            comparable: bool | None = None, weights: Callable[[str], Any] | None = None) -> Resolution:
    """Score every prunable group with the plan's criterion and choose the kept channels.

    ``adjust(scores) -> scores`` (by group index) rewrites the scores before the choice (training
    methods force channels out or rank by learned indicators); ``comparable`` overrides the
    criterion's flag (scores comparable across groups under global ranking)."""
    check_names(plan, module_names)
    recorded, plan = plan, concrete_step(plan)
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
            warnings.warn(f"Plan.overrides[{name!r}]: that module produces no prunable channels; it is ignored",
                          stacklevel=3)
        for g in hit:
            if g.index in ratio and ratio[g.index] != value:
                warnings.warn(f"channel group {g.key} gets several overrides; using the smallest sparsity", stacklevel=3)
            ratio[g.index] = min(value, ratio.get(g.index, value))
    active = [g for g in groups if not g.pinned.all()]
    spec = CRITERIA[plan.criterion]
    if comparable is not None:
        spec = dataclasses.replace(spec, comparable=comparable)
    ctx = ScoringContext(cg, parameters=parameters, seed=plan.seed, model=model, data=data, gm=gm,
                         options=plan.criterion_options, loss_fn=loss_fn, weights=weights)
    if plan.backend is not None:
        ctx.latency_backend = plan.backend
        ctx.latency_step = plan.round_to
    scores = score_groups(plan.criterion, active, ctx)
    if adjust is not None:
        scores = {**scores, **adjust(scores)}
    if plan.budget is not None:
        keep = _budget_keep(plan, cg, active, scores, pinned, ratio, ctx, spec)
    else:
        counts: dict[int, int] = {}
        if plan.scope == "global":
            counts.update(_global_counts(plan, [g for g in active if g.index not in ratio], scores, pinned, spec))
        for g in active:
            if g.index not in counts:
                counts[g.index] = keep_count(g.size, int(pinned[g.index].sum()), ratio.get(g.index, plan.sparsity), plan)
        keep = {g.index: choose(scores[g.index], pinned[g.index], counts[g.index]) for g in active}
    return resolution_from_keep(cg, active, keep, scores, recorded)


def concrete_step(plan: Plan) -> Plan:
    """``plan`` with ``round_to="auto"`` replaced by its backend's measured step."""
    if plan.round_to != "auto":
        return plan
    step = backend_step(plan.backend)
    log.info("round_to='auto' on %s: step %d", plan.backend, step)
    return dataclasses.replace(plan, round_to=step)


def resolution_from_keep(cg: ChannelGraph, groups: Iterable[Group], keep: dict[int, Any],
                         scores: dict[int, np.ndarray], plan: Plan | None = None) -> Resolution:
    """The ``Resolution`` keeping ``keep[g.index]`` (class indices, or a bool mask per class) of
    every group in ``groups``. Pinned classes are always kept; a group that would lose every
    channel, and any tensor that would (one output of a split, say), gets back its best-scoring
    channel by ``scores``: every plan, learned gate and zero-channel search ends here."""
    groups = list(groups)
    for g in groups:
        k = np.zeros(g.size, dtype=bool)
        sel = np.asarray(keep.get(g.index, []))
        if sel.dtype == bool:
            k |= sel
        else:
            k[sel.astype(np.int64)] = True
        k |= g.pinned
        if not k.any():
            k[int(np.argmax(scores[g.index]))] = True
        keep[g.index] = np.nonzero(k)[0].tolist()
    _keep_every_tensor_nonempty(cg, keep, scores)
    return Resolution({g.key: GroupChoice(g.size, keep[g.index], g.producer_modules, g.signature) for g in groups},
                      plan)


# ------------------------------------------------------------------------------------------------
# Budgets: keep at most a fraction of the dense MACs / parameters
# ------------------------------------------------------------------------------------------------
def _order(scores: np.ndarray, pinned: np.ndarray) -> np.ndarray:
    """Classes in the order they are kept: pinned first, then by score (ties: lower index)."""
    idx = np.arange(len(scores))
    return idx[np.lexsort((idx, -scores, ~pinned))]


def _budget_keep(plan: Plan, cg: ChannelGraph, active: list[Group], scores: dict[int, np.ndarray],
                 pinned: dict[int, np.ndarray], ratio: dict[int, float], ctx: ScoringContext,
                 spec: CriterionSpec) -> dict[int, list[int]]:
    kind, fraction = plan.budget
    model = ctx.cost_model({"flops": "macs", "params": "params", "latency": "latency"}[kind])
    dense = model.dense
    target = fraction * dense
    fixed = {g.index: keep_count(g.size, int(pinned[g.index].sum()), ratio[g.index], plan)
             for g in active if g.index in ratio}
    free = [g for g in active if g.index not in ratio]
    if plan.scope == "local":
        keep = _local_budget(plan, cg, active, free, fixed, scores, pinned, model, target)
    else:
        keep = _global_budget(plan, cg, active, free, fixed, scores, pinned, model, target, ctx, spec)
    achieved = model.evaluate(_keep_vector(cg, active, keep))
    log.info("%s budget %.1f%%: %.4g of %.4g kept (%.2f%%)", kind, 100 * fraction, achieved, dense,
             100 * achieved / dense)
    return keep


def _keep_vector(cg: ChannelGraph, groups: list[Group], keep: dict[int, list[int]]) -> np.ndarray:
    vec = np.ones(cg.uf.n)
    for g in groups:
        dead = np.ones(g.size, dtype=bool)
        dead[keep[g.index]] = False
        vec[g.classes[dead]] = 0.0
    return vec


def _unreachable(plan: Plan, model: Any, floor: float, dense: float) -> PlanError:
    kind, fraction = plan.budget
    return PlanError(f"{kind}={fraction:g} cannot be reached: with every prunable group at its minimum width "
                     f"(min_channels={plan.min_channels}, max_sparsity={plan.max_sparsity:g}, round_to={plan.round_to}, "
                     f"pinned channels) the model keeps "
                     f"{floor / dense:.1%} of its {model.name}. Ask for at least {math.ceil(1000 * floor / dense) / 1000:g}, "
                     "or unpin channels (see the report's barriers) / lower min_channels / raise max_sparsity.")


def _local_budget(plan, cg, active, free, fixed, scores, pinned, model, target) -> dict[int, list[int]]:
    """One sparsity ratio for every free group: the smallest that meets the budget (bisection)."""
    orders = {g.index: _order(scores[g.index], pinned[g.index]) for g in active}

    def keep_at(r: float) -> dict[int, list[int]]:
        counts = dict(fixed)
        for g in free:
            counts[g.index] = keep_count(g.size, int(pinned[g.index].sum()), r, plan)
        return {g.index: sorted(orders[g.index][:counts[g.index]].tolist()) for g in active}

    def cost(r: float) -> float:
        return model.evaluate(_keep_vector(cg, active, keep_at(r)))

    hi = plan.max_sparsity
    if cost(hi) > target:
        raise _unreachable(plan, model, cost(hi), model.dense)
    lo = 0.0
    if cost(lo) <= target:
        return keep_at(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if cost(mid) <= target else (mid, hi)
    if plan.uniform:  # one width per group size: the fill-back would add channels to some groups only
        return keep_at(hi)
    return _local_fill(plan, cg, active, free, keep_at(hi), orders, model, target)


def _local_fill(plan, cg, active, free, keep, orders, model, target) -> dict[int, list[int]]:
    """With a coarse ``round_to`` every group of one width crosses a step at the same ratio
    (a DenseNet's 32-channel growth layers go 32 -> 16 together, undershooting a MACs budget by a
    third): give groups back one step of their best removed channels, the most pruned first,
    while the budget still holds."""
    step = concrete_step(plan).round_to
    if step == 1:
        return keep
    counts = {g.index: len(keep[g.index]) for g in free}
    cur = model.evaluate(_keep_vector(cg, active, keep))
    for _ in range(4):
        changed = False
        for g in sorted(free, key=lambda g: (counts[g.index] / g.size, g.index)):
            if cur >= target * (1 - 1e-3):
                return keep
            k = min(g.size, counts[g.index] + step)
            if k == counts[g.index]:
                continue
            trial = {**keep, g.index: sorted(orders[g.index][:k].tolist())}
            new = model.evaluate(_keep_vector(cg, active, trial))
            if new <= target:
                keep, cur, counts[g.index], changed = trial, new, k, True
        if not changed:
            break
    return keep


def _global_budget(plan, cg, active, free, fixed, scores, pinned, model, target, ctx, spec) -> dict[int, list[int]]:
    """Global ranking under a budget, in steps: remove the lowest-ranked channels until the
    estimated saving (the cost model's gradient at the current widths) covers half of what is
    still over budget, re-evaluate the exact cost (round_to applied), rescore cost-aware
    criteria, repeat (each step removes at least one channel); then ``fill`` gives back the
    best-ranked removed channels that still fit. The result is at or just under the target."""
    removed = {g.index: np.zeros(g.size, dtype=bool) for g in free}
    floor = {g.index: floor_count(g.size, int(pinned[g.index].sum()), plan) for g in free}
    fixed_keep = {g.index: sorted(_order(scores[g.index], pinned[g.index])[:fixed[g.index]].tolist())
                  for g in active if g.index in fixed}

    def current(sc: dict[int, np.ndarray]) -> dict[int, list[int]]:
        keep = dict(fixed_keep)
        for g in free:
            alive = ~removed[g.index]
            n = int(alive.sum())
            k = min(g.size, -(-max(n, floor[g.index]) // plan.round_to) * plan.round_to)
            if k > n:  # round_to / floors: give back the best removed channels
                back = np.nonzero(~alive)[0]
                back = back[np.lexsort((back, -sc[g.index][back]))][:k - n]
                alive = alive.copy()
                alive[back] = True
            keep[g.index] = np.nonzero(alive)[0].tolist()
        return keep

    def normalised(sc: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        if spec.comparable:
            return sc
        out = {}
        for g in free:
            s, p = sc[g.index], pinned[g.index]
            mean = s[~p].mean() if (~p).any() else 1.0
            out[g.index] = s / mean if mean > 0 else np.ones_like(s)
        return out

    def fill(keep: dict[int, list[int]], vec: np.ndarray, cur: float) -> dict[int, list[int]]:
        """The last step can undershoot by one expensive channel (a residual-stream channel at
        full resolution is ~2% of a CIFAR ResNet's MACs): give back the best-ranked removed
        channels that still fit under the target, until within 0.1% of it."""
        marginal = model.marginal(vec)
        back = [(float(rank[g][c]), g, int(c)) for g in removed for c in np.nonzero(removed[g])[0]]
        tries = 0
        for _, g, c in sorted(back, key=lambda t: (-t[0], t[1], t[2])):
            slack = target - cur
            if slack <= 1e-3 * target or tries >= 200:
                break
            if marginal[by_index[g].classes[c]] > slack:
                continue
            removed[g][c] = False
            tries += 1
            new_keep = current(scores)
            new_vec = _keep_vector(cg, active, new_keep)
            new = model.evaluate(new_vec)
            if new <= target:
                keep, vec, cur = new_keep, new_vec, new
                marginal = model.marginal(vec)
            else:
                removed[g][c] = True
        return keep

    by_index = {g.index: g for g in free}
    rank = normalised(scores)
    for step in range(100_000):
        keep = current(scores)
        vec = _keep_vector(cg, active, keep)
        cur = model.evaluate(vec)
        if cur <= target:
            return fill(keep, vec, cur)
        if step and spec.cost_aware:
            ctx.keep = vec
            scores = {**scores, **score_groups(plan.criterion, free, ctx)}
            rank = normalised(scores)
        marginal = model.marginal(vec)
        cand_s, cand_g, cand_c = [], [], []
        for g in free:
            ok = np.nonzero(~removed[g.index] & ~pinned[g.index])[0]
            cand_s.append(rank[g.index][ok])
            cand_g.append(np.full(len(ok), g.index))
            cand_c.append(ok)
        if not cand_s:
            raise _unreachable(plan, model, cur, model.dense)
        s, gi, ci = np.concatenate(cand_s), np.concatenate(cand_g), np.concatenate(cand_c)
        room = {g.index: int((~removed[g.index]).sum()) - floor[g.index] for g in free}
        want, saved, taken = 0.5 * (cur - target), 0.0, 0
        for i in np.lexsort((ci, gi, s)):
            g = int(gi[i])
            if room[g] <= 0:
                continue
            removed[g][ci[i]] = True
            room[g] -= 1
            taken += 1
            saved += float(marginal[by_index[g].classes[ci[i]]])
            if saved >= want:
                break
        if taken == 0:
            raise _unreachable(plan, model, cur, model.dense)
    raise AssertionError("budget search did not converge")


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


def global_removals(scores: list[np.ndarray], pinned: list[np.ndarray], floors: list[int], sparsity: float,
                    comparable: bool) -> list[int]:
    """How many channels each layer loses when all are ranked together and ``sparsity`` of the
    total goes. Scores are divided by their layer's mean (unless ``comparable``) so that layers
    with larger weights do not dominate: a channel goes when it is weak relative to its own
    layer. No layer drops below its floor; ties go to the earlier layer."""
    target = math.floor(sparsity * sum(len(s) for s in scores) + 1e-9)
    norm, owner = [], []
    for i, (s, p) in enumerate(zip(scores, pinned)):
        if not comparable:
            mean = s[~p].mean() if (~p).any() else 1.0
            s = s / mean if mean > 0 else np.ones_like(s)
        norm.append(s[~p])
        owner.append(np.full(int((~p).sum()), i))
    if not norm:
        return []
    flat, owner_flat = np.concatenate(norm), np.concatenate(owner)
    removed = [0] * len(scores)
    done = 0
    for i in np.argsort(flat, kind="stable"):
        if done >= target:
            break
        g = int(owner_flat[i])
        if len(scores[g]) - removed[g] - 1 >= floors[g]:
            removed[g] += 1
            done += 1
    return removed


def _global_counts(plan: Plan, groups: list[Group], scores: dict[int, np.ndarray],
                   pinned: dict[int, np.ndarray], spec: CriterionSpec) -> dict[int, int]:
    """Kept widths under one ranking across groups (``global_removals``), rounded by the plan."""
    if not groups:
        return {}
    removed = global_removals([scores[g.index] for g in groups], [pinned[g.index] for g in groups],
                              [floor_count(g.size, int(pinned[g.index].sum()), plan) for g in groups],
                              plan.sparsity, spec.comparable)
    return {g.index: keep_count(g.size, int(pinned[g.index].sum()), r / g.size, plan)
            for g, r in zip(groups, removed)}
