"""The forward signature against the example inputs: arity check, and the default values that
fix arguments the example inputs do not supply (``forward(self, x, return_features=False)``)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import PlanError

__all__ = ["check_arity", "unsupplied_defaults", "without_cache"]


def _parameters(model: nn.Module) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None


def check_arity(model: nn.Module, inputs: tuple[Any, ...]) -> None:
    params = _parameters(model)
    if params is None or any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(inputs) > len(positional):
        raise PlanError(f"{len(inputs)} example inputs given, but {type(model).__name__}.forward takes "
                        f"{len(positional)} ({', '.join(p.name for p in positional)}); pass one tensor per argument")


def unsupplied_defaults(model: nn.Module, inputs: tuple[Any, ...],
                        concrete_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Arguments of ``model.forward`` that neither ``inputs`` (positionally) nor ``concrete_args``
    supply, mapped to their default values: the trace fixes them to those values (the pruned
    model's forward checks a caller passes the same value). An unsupplied argument without a
    default is an error naming it."""
    params = _parameters(model)
    if params is None:
        return {}
    given = set(concrete_args or {})
    fixed: dict[str, Any] = {}
    positional_seen = 0
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional_seen < len(inputs):
            positional_seen += 1
            continue
        if p.name in given:
            continue
        if p.default is inspect.Parameter.empty:
            raise PlanError(f"{type(model).__name__}.forward takes `{p.name}`, which example_inputs does not "
                            f"supply and which has no default; pass it in example_inputs or fix it with "
                            f"concrete_args={{'{p.name}': ...}}")
        fixed[p.name] = p.default
    return fixed


def without_cache(model: nn.Module, fixed: dict[str, Any]) -> bool:
    """Fix ``use_cache=False`` when the forward would return a key/value cache by default (a
    HuggingFace model whose config has ``use_cache``): the cache is an output object torch.export
    cannot return, and its heads would have to stay whole. True when it was fixed."""
    if "use_cache" in fixed and fixed["use_cache"] is None and getattr(getattr(model, "config", None), "use_cache",
                                                                       False):
        fixed["use_cache"] = False
        return True
    return False
