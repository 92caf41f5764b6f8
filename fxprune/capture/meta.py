"""What torch.fx records on a node, read back: shapes from ``node.meta["tensor_meta"]`` (filled by
shape propagation), submodules through a cached name table, and a readable name of a node's op."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import fx
from torch.fx.passes.shape_prop import TensorMetadata

__all__ = ["TENSOR_META", "describe_target", "has_tensor", "map_meta", "multi_meta", "node_shape", "submodule",
           "tensor_meta"]

TENSOR_META = "tensor_meta"
"""The ``node.meta`` key torch.fx's ShapeProp (and fxprune's shape propagation) writes."""

_MODULE_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def submodule(root: torch.nn.Module, target: str) -> torch.nn.Module:
    """``root.get_submodule(target)`` through a cached name table. Only for module trees that do
    not change afterwards (the traced dense graph modules): lookups happen several times per node."""
    table = _MODULE_TABLES.get(root)
    if table is None:
        table = _MODULE_TABLES[root] = dict(root.named_modules(remove_duplicate=False))
    return table[target]


def tensor_meta(node: Any) -> Any:
    return node.meta.get(TENSOR_META) if isinstance(node, fx.Node) else None


def multi_meta(node: Any) -> list[Any] | None:
    """The per-output metadata of a node that returns a tuple/list (None for a single tensor)."""
    meta = tensor_meta(node)
    if isinstance(meta, (tuple, list)) and not isinstance(meta, TensorMetadata):
        return list(meta)
    return None


def node_shape(node: Any) -> tuple[int, ...] | None:
    meta = tensor_meta(node)
    return tuple(int(s) for s in meta.shape) if isinstance(meta, TensorMetadata) else None


def map_meta(meta: Any, fn: Callable[[TensorMetadata], Any]) -> Any:
    """Apply ``fn`` to every TensorMetadata leaf of a node's (possibly nested) output meta."""
    if isinstance(meta, TensorMetadata):
        return fn(meta)
    if isinstance(meta, (tuple, list)):
        return [map_meta(m, fn) for m in meta]
    if isinstance(meta, dict):
        return {k: map_meta(v, fn) for k, v in meta.items()}
    return None


def has_tensor(meta: Any) -> bool:
    if isinstance(meta, TensorMetadata):
        return True
    if isinstance(meta, (tuple, list)):
        return any(has_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(has_tensor(m) for m in meta.values())
    return False


def describe_target(gm: fx.GraphModule, node: fx.Node) -> str:
    """``Conv2d `layer1.0.conv1```, ``Tensor.view``, ``torch.nn.functional.linear``: an op as
    a user reads it in an error message."""
    if node.op == "call_module":
        try:
            return f"{type(submodule(gm, node.target)).__name__} `{node.target}`"
        except (AttributeError, KeyError):
            return f"module `{node.target}`"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        t = node.target
        mod = getattr(t, "__module__", None) or ""
        name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)
        mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
               "torch._C._VariableFunctions": "torch"}.get(mod, mod)
        return f"{mod}.{name}" if mod else name
    return f"{node.op} {node.target}"
