"""``Plan(attention="both")``: whole heads, then the same head dims in every kept head.

One channel graph cannot hold both at once (a head's q/k/v rows are one class when heads go,
and each dim across heads is one when dims go), so the compile runs in two stages: the dense
model pruned in heads mode, then the result pruned in head-dims mode with every group but the
attention ones left whole. Both stages are exact and verified, so the composition is.

An *attention group* is one whose members differ between the two analyses of the same model;
its producing modules get the split sparsity 1 - sqrt(1 - s) in each stage, so the kept fraction
of the attention width is (1 - s) as in the other modes. The resolution records both stages
(``Resolution.then``) and gives back the same model when applied to a fresh copy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from torch import fx, nn

from .errors import PlanError, ResolutionError
from .plan import Plan, Resolution
from .report import META_ATTR, REPORT_KEY, RESOLUTION_KEY, Report, report

__all__ = ["attention_modules", "compile_both", "split_sparsity"]


def split_sparsity(s: float) -> float:
    """The sparsity of each of two stages whose kept fractions multiply to 1 - s."""
    return 1.0 - math.sqrt(1.0 - s)


def attention_modules(cg, other) -> list[str]:
    """Producing modules of the groups of ``cg`` whose members ``other`` (the same model analysed
    in the other attention mode) does not have."""
    theirs = {(g.size, g.signature) for g in other.groups()}
    out: list[str] = []
    for g in cg.groups():
        if g.prunable and (g.size, g.signature) not in theirs:
            out.extend(m for m in g.producer_modules if m not in out)
    return out


def compile_both(compile_fn: Callable[..., nn.Module], analyse_fn: Callable[..., Any], model: nn.Module,
                 plan: Plan | None, example_inputs: Any, resolution: Resolution | None,
                 options: dict[str, Any], trace_options: dict[str, Any]) -> nn.Module:
    """The two-stage compile (see the module docstring). ``options``: verify / tolerance /
    calibration arguments of both stages; ``trace_options``: capture arguments of the first."""
    user = plan or resolution.plan
    if resolution is not None:
        if resolution.then is None:
            raise ResolutionError("this resolution has one stage; a plan with attention='both' needs the two stages "
                                  "that compiling it records (fxprune.resolution_of(small))")
        first = Resolution(resolution.groups, dataclasses.replace(resolution.plan, attention="heads"))
        small1 = compile_fn(model, None, example_inputs, resolution=first, **options, **trace_options)
        small = compile_fn(small1, None, example_inputs, resolution=resolution.then, **options,
                           **_second_trace(small1, trace_options))
        return _combine(small1, small, user, first, resolution.then)
    heads = analyse_fn(model, example_inputs, attention="heads", prune_outputs=user.prune_outputs, **trace_options)
    dims = analyse_fn(model, example_inputs, attention="head_dims", prune_outputs=user.prune_outputs, **trace_options)
    by_heads, by_dims = attention_modules(heads.cg, dims.cg), attention_modules(dims.cg, heads.cg)
    base = user.sparsity

    def split(names: list[str]) -> dict[str, float]:
        return {m: split_sparsity(user.overrides.get(m, base)) for m in names}

    plan1 = dataclasses.replace(user, attention="heads", overrides={**user.overrides, **split(by_heads)})
    small1 = compile_fn(model, plan1, analysis=heads, **options)
    first = report(small1)
    if not by_dims:
        first.notes.append("attention='both': the model has no attention groups, so only the heads stage ran")
        return small1
    plan2 = dataclasses.replace(user, attention="head_dims", sparsity=0.0, scope="local", overrides=split(by_dims))
    small = compile_fn(small1, plan2, example_inputs, **options, **_second_trace(small1, trace_options))
    return _combine(small1, small, user, _resolution(small1), _resolution(small))


def _second_trace(small1: nn.Module, trace_options: dict[str, Any]) -> dict[str, Any]:
    """A first stage that is a graph module is traced by fx again (its forward is plain ops);
    the user's own module (the run capture) is captured as the first stage was."""
    if isinstance(small1, fx.GraphModule):
        return {"registry": trace_options.get("registry")} if "registry" in trace_options else {}
    return trace_options


def _resolution(m: nn.Module) -> Resolution:
    meta = m.meta if isinstance(m, fx.GraphModule) else getattr(m, META_ATTR)
    return meta[RESOLUTION_KEY]


def _combine(small1: nn.Module, small: nn.Module, user: Plan, first: Resolution, second: Resolution) -> nn.Module:
    """``small`` with a report of both stages against the dense model and the two-stage resolution."""
    r1, r2 = report(small1), report(small)
    seconds = dict(r1.seconds)
    for k, v in r2.seconds.items():
        seconds[k] = seconds.get(k, 0.0) + v
    errors = [r.max_abs_error for r in (r1, r2) if r.max_abs_error is not None]
    scales = [r.max_abs_reference for r in (r1, r2) if r.max_abs_reference is not None]
    notes = list(r1.notes) + [n for n in r2.notes if n not in r1.notes]
    notes.append("attention='both': whole heads were pruned, then the same head dims in every kept head (two "
                 "stages, each verified; the error is the larger of the two)")
    combined = Report(
        model=r1.model, params_before=r1.params_before, params_after=r2.params_after, macs_before=r1.macs_before,
        macs_after=r2.macs_after, groups=r1.groups + [g for g in r2.groups if g.after < g.before],
        barriers=r1.barriers, auto_leaves=r1.auto_leaves, seconds=seconds,
        max_abs_error=max(errors) if errors else None, max_abs_reference=max(scales) if scales else None,
        train_graph=r1.train_graph, notes=notes, plan=user.to_dict(), fixed_arguments=r1.fixed_arguments,
        capture=r1.capture, specialised=r1.specialised)
    both = Resolution(first.groups, user, dataclasses.replace(second, then=None))
    meta = small.meta if isinstance(small, fx.GraphModule) else getattr(small, META_ATTR)
    meta[REPORT_KEY], meta[RESOLUTION_KEY] = combined, both
    return small
