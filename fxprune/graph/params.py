"""Where a layer's parameters really live: weight-normalised layers store ``g`` and ``v`` instead
of ``weight`` (``torch.nn.utils.parametrizations.weight_norm`` or the legacy hook)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["is_parametrized", "lookup_tensor", "weight_norm_of"]


def is_parametrized(mod: nn.Module, pname: str) -> bool:
    return parametrize.is_parametrized(mod, pname)


def lookup_tensor(mod: nn.Module, path: str) -> torch.Tensor:
    obj: Any = mod
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def weight_norm_of(mod: nn.Module, pname: str) -> tuple[str, str, int | None] | None:
    """``(g, v, dim)`` names (relative to ``mod``) when ``mod.<pname>`` is weight-normalised —
    by ``torch.nn.utils.parametrizations.weight_norm`` (one ``_WeightNorm`` parametrization) or
    the legacy hook-based ``torch.nn.utils.weight_norm``; ``dim`` None: one norm over the
    whole tensor. None otherwise."""
    if is_parametrized(mod, pname):
        plist = mod.parametrizations[pname]
        if len(plist) == 1 and isinstance(plist[0], _WeightNorm):
            dim = plist[0].dim
            return (f"parametrizations.{pname}.original0", f"parametrizations.{pname}.original1",
                    None if dim == -1 else dim)
        return None
    for hook in mod._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == pname:
            return f"{pname}_g", f"{pname}_v", None if hook.dim == -1 else hook.dim
    return None
