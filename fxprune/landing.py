"""Plans that land where asked on a named backend: time the compiled model, correct, resolve again.

A latency plan is resolved against per-layer tables (``fxprune.graph.latency``), which miss what
only the whole model shows (fusion, memory traffic between layers, the backend's choice of
kernels). ``land`` closes the loop: it builds the pruned model of each resolution, times it and
the dense model on the plan's backend (in alternation, the dense model prepared once:
``ModelPair``), and while the measured latency ratio misses the target by
more than ``plan.latency_tolerance`` (relative) it scales the planner's target by
``target / measured`` and resolves again, at most ``plan.latency_iterations`` times; the
resolution measured closest to the target wins. Any plan that names a backend (a MACs budget, a
sparsity) gets one measurement: a pruned model slower than the dense one is resolved again with
the backend's step (``round_to="auto"``), and a warning says so if it is still slower.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from . import progress
from .errors import PlanError
from .graph.latency import ModelPair, backend_step
from .plan import Plan, Resolution

__all__ = ["land"]

log = logging.getLogger(__name__)


def land(plan: Plan, resolve: Callable[[Plan], Resolution], build: Callable[[Resolution], fx.GraphModule],
         dense: fx.GraphModule, inputs: tuple[Any, ...], *,
         measure: Callable[[fx.GraphModule], float] | None = None) -> tuple[Resolution, dict[str, Any] | None]:
    """The resolution of ``plan`` measured closest to its latency target on ``plan.backend``
    (or, for other budgets, one that is not slower than dense), and what was measured: a dict
    with dense / pruned ms, the ratio, the step and every iteration."""
    first = resolve(plan)
    if plan.backend is None:
        return first, None
    tensors = tuple(x for x in inputs if isinstance(x, torch.Tensor))
    if len(tensors) != len(inputs):
        warnings.warn(f"backend={plan.backend!r}: the pruned model is not timed (its inputs are not all tensors)",
                      stacklevel=3)
        return first, None
    if measure is None:
        pair = ModelPair(dense, tensors, plan.backend)  # pruned and dense timed in alternation
        dense_time, pair_time = pair.dense_ms, pair.measure
    else:
        dense_time, pair_time = (lambda: measure(dense)), (lambda gm: (measure(gm), measure(dense)))
    step = backend_step(plan.backend)  # what "auto" means there, and the fallback of a slower plan
    try:
        progress.step(f"on {plan.backend}: timing the dense model")
        dense_ms = dense_time()
    except Exception as exc:  # noqa: BLE001 - a backend that cannot run the model: say so, keep the plan
        warnings.warn(f"backend={plan.backend!r} could not time the dense model ({type(exc).__name__}: {exc}); the "
                      "plan is not checked against measured latency", stacklevel=3)
        return first, None
    info: dict[str, Any] = {"backend": plan.backend, "dense_ms": dense_ms, "round_to": _step_of(first, step),
                            "backend_step": step, "iterations": []}

    def record(res: Resolution, asked: float | None) -> float:
        """Time the pruned model of ``res`` and the dense one in alternation; the ratio is of the
        pair. A shared machine has spikes, and both models of a pair see the same load: a ratio
        against the best dense time seen at a calmer moment read a spike as a slow pruned model
        (EfficientNet-B0 measured 0.77 of dense in a loop where the same model measures 0.47)."""
        progress.step(f"on {plan.backend}: building and timing round {len(info['iterations']) + 1}")
        ms, dense_now = pair_time(build(res))
        info["iterations"].append({"asked": asked, "round_to": _step_of(res, step), "pruned_ms": ms,
                                   "dense_ms": dense_now, "ratio": ms / dense_now})
        log.info("backend %s, iteration %d: asked %s, measured %.3f of dense", plan.backend,
                 len(info["iterations"]), asked, ms / dense_now)
        return ms / dense_now

    tried: list[tuple[float, Resolution]] = []
    tried.append((record(first, plan.latency), first))
    if plan.latency is not None:
        target, asked = plan.latency, plan.latency
        points = [(plan.latency, tried[0][0])]  # (asked, measured ratio)
        while len(tried) < plan.latency_iterations and abs(tried[-1][0] - target) > plan.latency_tolerance * target:
            asked = _next_target(points, target)
            if any(abs(asked - a) < 1e-4 for a, _ in points):
                break
            try:
                res = resolve(dataclasses.replace(plan, latency=asked))
            except PlanError as exc:  # below what the table can plan: the lowest target that it can
                info["unreachable"] = str(exc)
                lowest = _lowest_plannable(plan, resolve, asked, min(a for a, _ in points))
                if lowest is None or any(abs(lowest[0] - a) < 1e-4 for a, _ in points):
                    warnings.warn(f"latency={target:g} on {plan.backend} is out of reach: the pruned model measures "
                                  f"{min(r for r, _ in tried):.3f} of the dense latency at the most the plan can prune "
                                  f"({exc})", stacklevel=3)
                    break
                asked, res = lowest
            tried.append((record(res, asked), res))
            points.append((asked, tried[-1][0]))
        ratio, best = min(tried, key=lambda t: (abs(t[0] - target), t[0]))
        if abs(ratio - target) > plan.latency_tolerance * target:
            warnings.warn(f"latency={target:g} on {plan.backend}: the pruned model measures {ratio:.3f} of the dense "
                          f"latency after {len(tried)} iteration(s) (tolerance {plan.latency_tolerance:g}); see "
                          "report(small).latency", stacklevel=3)
    else:
        ratio, best = tried[0]
    if ratio > 1.0 and _step_of(first, step) < step:
        warnings.warn(f"backend={plan.backend!r}: the pruned model measured slower than the dense one "
                      f"({ratio:.2f}x its latency) with round_to={plan.round_to}; resolving again with the "
                      f"backend's step, round_to={step}", stacklevel=3)
        res = resolve(dataclasses.replace(plan, round_to=step))
        tried.append((record(res, None), res))
        r2 = tried[-1][0]
        if r2 < ratio:
            ratio, best = r2, res
            info["round_to"] = step
    if ratio > 1.0:
        warnings.warn(f"backend={plan.backend!r}: THE PRUNED MODEL IS SLOWER THAN THE DENSE ONE ({ratio:.2f}x its "
                      "measured latency). Prune more (a latency budget), raise round_to, or keep the dense model.",
                      stacklevel=3)
    best.plan = plan
    k = next(k for k, (_, res) in enumerate(tried) if res is best)
    it = info["iterations"][k]
    info.update(dense_ms=it["dense_ms"], pruned_ms=it["pruned_ms"], ratio=it["ratio"], speedup=1.0 / it["ratio"],
                target=plan.latency)
    return best, info


def _lowest_plannable(plan: Plan, resolve: Callable[[Plan], Resolution], bad: float,
                      good: float) -> tuple[float, Resolution] | None:
    """The smallest latency target in (bad, good] the planner can still resolve (bisection;
    ``bad`` raised, ``good`` resolved), with its resolution."""
    found = None
    for _ in range(6):
        mid = (bad + good) / 2
        try:
            found = (mid, resolve(dataclasses.replace(plan, latency=mid)))
            good = mid
        except PlanError:
            bad = mid
    return found


def _next_target(points: list[tuple[float, float]], target: float) -> float:
    """The planner target to try next, from the (asked, measured ratio) pairs so far: the
    measured ratio grows with the target, and asking for 1.0 gives the dense model (ratio 1);
    interpolate between the closest pair around ``target`` (regula falsi), or scale down by
    ``target / measured`` while every measurement is above it."""
    known = points + [(1.0, 1.0)]
    below = [p for p in known if p[1] < target]
    above = [p for p in known if p[1] >= target]
    hi = min(above)
    if not below:
        a, r = min(points)
        return max(1e-3, a * target / r)
    lo = max(below)
    if hi[1] == lo[1]:
        return (lo[0] + hi[0]) / 2
    return min(hi[0], max(lo[0], lo[0] + (target - lo[1]) * (hi[0] - lo[0]) / (hi[1] - lo[1])))


def _step_of(res: Resolution, default: int) -> int:
    plan = res.plan
    return plan.round_to if plan is not None and isinstance(plan.round_to, int) else default
