"""Building module trees: assign/look up dotted attributes, copy a layer with new tensors."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def assign_attr(root: nn.Module, target: str, value: Any) -> None:
    *path, leaf = target.split(".")
    mod = root
    for part in path:
        if not hasattr(mod, part):
            mod.add_module(part, nn.Module())
        mod = getattr(mod, part)
    if isinstance(value, nn.Module):
        mod.add_module(leaf, value)
    elif isinstance(value, nn.Parameter):
        mod.register_parameter(leaf, value)
    elif isinstance(value, torch.Tensor) and not hasattr(mod, leaf):
        mod.register_buffer(leaf, value)
    else:
        setattr(mod, leaf, value)


def lookup_attr(root: Any, target: str) -> Any:
    obj = root
    for part in target.split("."):
        obj = obj[part] if isinstance(obj, dict) and part in obj else getattr(obj, part)
    return obj


def copy_module(old: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """A copy of ``old`` whose tensors are the new ones in ``memo``. A leaf layer (no children,
    every tensor in the memo) is copied attribute by attribute, which is much cheaper than
    ``deepcopy``; anything else goes through ``deepcopy`` with the memo."""
    d = vars(old)
    tensors = list(d["_parameters"].values()) + list(d["_buffers"].values())
    if d["_modules"] or any(t is not None and id(t) not in memo for t in tensors):
        return copy.deepcopy(old, memo)
    new = object.__new__(type(old))
    for k, v in d.items():
        if k == "_parameters" or k == "_buffers":
            v = {name: (None if t is None else memo[id(t)]) for name, t in v.items()}
        elif isinstance(v, (dict, list, set)):
            v = v.copy()
        elif not isinstance(v, (int, float, str, bool, tuple, type(None), torch.dtype, torch.device)):
            v = copy.deepcopy(v)
        object.__setattr__(new, k, v)
    return new
