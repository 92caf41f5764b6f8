"""What an untrusted ``.fxp`` file may name: identifiers, ops, tensor methods, module classes.

Everything here is an explicit table built from *objects* (torch's own functions, ``operator``'s
arithmetic, ``math``), keyed by the names a file uses. Loading a file looks names up in these
tables; it never imports a module or walks an attribute path named by the file, so a name that is
not a key resolves to nothing, whatever its prefix says. Saving looks objects up by identity.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import math
import operator
import re
from typing import Any

import torch

from ..capture.export import expect_shape, expect_value
from ..graph.rules.norms import dense_layer_norm, exact_module_classes
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from ..graph.rules import REGISTRY
from ..graph.rules.aligned import builtin_aligned_classes

__all__ = ["ALLOWED_GETATTR", "function_name", "function_table", "is_allowed_method", "is_allowed_module_attr",
           "is_attr_path", "is_identifier", "is_placeholder_target", "lookup_function", "module_class_name",
           "module_table", "tensor_methods"]

# ---- grammar ----------------------------------------------------------------------------------
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_COMPONENT = re.compile(r"[A-Za-z0-9_-]+\Z")  # '-' appears in torchvision's RegNet module names


def is_identifier(name: Any) -> bool:
    """A Python identifier (ASCII) that is not a keyword and not a dunder."""
    return (isinstance(name, str) and bool(_IDENT.match(name)) and not keyword.iskeyword(name)
            and not name.startswith("__"))


def is_placeholder_target(name: Any) -> bool:
    """``x``, ``*args`` or ``**kwargs``: what fx writes into a generated ``def forward(self, ...)``."""
    if not isinstance(name, str):
        return False
    core = name[2:] if name.startswith("**") else name[1:] if name.startswith("*") else name
    return is_identifier(core)


def is_attr_path(path: Any) -> bool:
    """A dotted module/attribute path such as ``layer1.0.conv1``: components ``[A-Za-z0-9_-]+``, no dunders."""
    if not isinstance(path, str) or not path:
        return False
    return all(_COMPONENT.match(c) and not c.startswith("__") and not keyword.iskeyword(c) for c in path.split("."))


# ---- tensor methods ---------------------------------------------------------------------------
# Methods that take callables, register hooks, touch storage/files or import by name.
_DENIED_METHODS = frozenset({
    "apply_", "map_", "map2_", "register_hook", "register_post_accumulate_grad_hook", "backward",
    "type", "storage", "untyped_storage", "share_memory_", "pin_memory", "data_ptr", "storage_offset",
    "numpy", "tolist", "module_load", "new", "set_", "resize_", "resize_as_", "record_stream",
    "retain_grad", "requires_grad_", "detach_", "_fix_weakref",
})
# Tensor methods written in Python (not in the C tensor base) that compute and do nothing else.
_PY_METHODS = ("split", "unflatten", "norm", "unique", "unique_consecutive", "stft", "istft", "lu",
               "align_to", "refine_names", "rename", "rename_", "__len__", "dim_order", "is_shared")


@functools.cache
def tensor_methods() -> frozenset[str]:
    base = torch._C.TensorBase
    names = {n for n in dir(base) if not n.startswith("_") and callable(getattr(base, n, None))}
    names |= {n for n in _PY_METHODS if not n.startswith("_") and hasattr(torch.Tensor, n)}
    return frozenset(names - _DENIED_METHODS)


# Non-tensor methods fx graphs call on values tensors return (torch.Size, tuples).
_EXTRA_METHODS = frozenset({"index", "count", "numel"})


def is_allowed_method(name: Any) -> bool:
    return isinstance(name, str) and is_identifier(name) and (name in tensor_methods() or name in _EXTRA_METHODS)


# Attribute reads that fx records as ``getattr(x, "name")``.
ALLOWED_GETATTR = frozenset({
    "shape", "dtype", "device", "T", "mT", "mH", "H", "real", "imag", "data", "ndim", "is_cuda",
    "requires_grad", "layout", "is_sparse", "is_quantized", "is_complex", "grad_fn", "names",
    "is_leaf", "itemsize", "nbytes",
})


def _safe_getattr(obj: Any, name: str, *default: Any) -> Any:
    if name not in ALLOWED_GETATTR:
        raise AttributeError(f"fxprune: reading attribute {name!r} is not allowed in a loaded graph")
    return getattr(obj, name, *default)


# ---- functions --------------------------------------------------------------------------------
_OPERATOR_NAMES = (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "neg", "pos", "abs", "invert",
    "and_", "or_", "xor", "lshift", "rshift", "eq", "ne", "lt", "le", "gt", "ge", "not_", "truth",
    "getitem", "setitem", "contains", "index", "concat", "iadd", "isub", "imul", "itruediv", "ifloordiv",
    "imod", "ipow", "imatmul", "iand", "ior", "ixor", "ilshift", "irshift", "is_", "is_not",
)
_DENIED_TORCH = frozenset({"from_file", "save", "load", "compile", "vmap", "cond", "while_loop"})
_DENIED_F = frozenset({"handle_torch_function", "has_torch_function", "has_torch_function_unary",
                       "has_torch_function_variadic", "boolean_dispatch"})


def _is_op(obj: Any) -> bool:
    return (inspect.isbuiltin(obj) or inspect.isfunction(obj) or type(obj).__name__ == "builtin_function_or_method") \
        and not inspect.isclass(obj)


def _public(ns: Any, deny: frozenset[str] = frozenset()) -> dict[str, Any]:
    out = {}
    for name in dir(ns):
        if name.startswith("_") or name in deny:
            continue
        obj = getattr(ns, name, None)
        mod = getattr(obj, "__module__", None) or ""
        if _is_op(obj) and (mod.startswith("torch") or mod in ("", "builtins")) and not name.startswith("set_"):
            out[name] = obj
    return out


def _add(table: dict[str, Any], ns_name: str, objs: dict[str, Any]) -> None:
    for name, obj in objs.items():
        table.setdefault(f"{ns_name}:{name}", obj)
        mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if isinstance(mod, str) and isinstance(qual, str):
            table.setdefault(f"{mod}:{qual}", obj)


@functools.cache
def function_table() -> dict[str, Any]:
    """name → callable, for every function a graph in an untrusted file may call."""
    import torch.nn.functional as F

    table: dict[str, Any] = {}
    _add(table, "builtins", {"getattr": _safe_getattr})
    table["builtins:getattr"] = _safe_getattr
    _add(table, "torch", {"_assert": torch._assert})
    # the check fx writes for an argument fixed to None (``concrete_args``, unsupplied defaults)
    _add(table, "torch.fx._symbolic_trace", {"_assert_is_none": torch.fx._symbolic_trace._assert_is_none})
    # the input guards of a model captured with torch.export (they only compare and raise)
    _add(table, "fxprune.capture.export", {"expect_shape": expect_shape, "expect_value": expect_value})
    # the exact rewrite of a pruned LayerNorm written as a function
    _add(table, "fxprune.graph.rules.norms", {"dense_layer_norm": dense_layer_norm})
    vf = {n: getattr(torch._C._VariableFunctions, n) for n in dir(torch._C._VariableFunctions)
          if not n.startswith("_") and n not in _DENIED_TORCH}
    _add(table, "torch", {n: getattr(torch, n) for n in vf if getattr(torch, n, None) is not None})
    _add(table, "torch", {n: getattr(torch.functional, n) for n in torch.functional.__all__})
    _add(table, "torch.nn.functional", _public(F, _DENIED_F))
    _add(table, "torch._C._nn", _public(torch._C._nn))
    for sub in ("fft", "linalg", "special"):
        _add(table, f"torch.{sub}", _public(getattr(torch, sub)))
    _add(table, "torch.Tensor", {n: getattr(torch.Tensor, n) for n in tensor_methods()})
    ops = {n: getattr(operator, n) for n in _OPERATOR_NAMES if hasattr(operator, n)}
    _add(table, "operator", ops)
    _add(table, "_operator", ops)
    _add(table, "math", {n: getattr(math, n) for n in dir(math) if not n.startswith("_") and callable(getattr(math, n))})
    try:
        import torchvision.ops as tvops

        _add(table, "torchvision.ops", _public(tvops))
        _add(table, "torchvision", _torchvision_wrapped())
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass

    for fn in list(REGISTRY.functions):
        mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
        if isinstance(mod, str) and isinstance(qual, str) and fn not in _denied_objects():
            table.setdefault(f"{mod}:{qual}", fn)
    return table


def _torchvision_wrapped() -> dict[str, Any]:
    """Functions torchvision registers with ``torch.fx.wrap`` (window attention, RoI pooling, ...): they
    appear as call_function nodes in traced torchvision models."""
    import torch.fx._symbolic_trace as st

    import torchvision  # noqa: F401  (importing it registers its wrapped functions)

    out = {}
    for (_, name), globs in list(getattr(st, "_wrapped_fns_to_patch", {}).items()):
        fn = globs.get(name) if isinstance(globs, dict) else None
        if inspect.isfunction(fn) and fn.__module__.startswith("torchvision."):
            out[f"{fn.__module__}.{name}"] = fn
    return out


def is_fx_wrapped(fn: Any) -> bool:
    """Whether ``fn`` is registered with ``torch.fx.wrap`` (by identity): its graph nodes must carry
    ``is_wrapped`` so that the generated code wraps it again and fx can trace the model again.
    torch's own (``_assert_is_none``) are not: the generated code reaches them through ``torch.``
    and a ``wrap()`` of that dotted name breaks every later trace in the process."""
    import torch.fx._symbolic_trace as st

    if str(getattr(fn, "__module__", "")).split(".")[0] == "torch":
        return False
    for (_, name), globs in list(getattr(st, "_wrapped_fns_to_patch", {}).items()):
        if isinstance(globs, dict) and globs.get(name) is fn:
            return True
    return False


@functools.cache
def _denied_objects() -> tuple[Any, ...]:
    return (operator.call if hasattr(operator, "call") else None, operator.attrgetter, operator.methodcaller,
            getattr, eval, exec, __import__, torch.load, torch.save)


@functools.cache
def _function_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for key, fn in function_table().items():
        names.setdefault(id(fn), key)
    names[id(getattr)] = "builtins:getattr"
    return names


def function_name(fn: Any) -> str | None:
    """The table key of ``fn`` (by identity), or None when an untrusted file may not call it."""
    key = _function_names().get(id(fn))
    if key is None:
        return None
    obj = function_table()[key]
    return key if obj is fn or (fn is getattr and obj is _safe_getattr) else None


def lookup_function(key: Any) -> Any:
    return function_table().get(key) if isinstance(key, str) else None


# ---- module classes ---------------------------------------------------------------------------
def _module_classes(ns: Any) -> list[type]:
    return [obj for name in dir(ns) if not name.startswith("_")
            for obj in [getattr(ns, name, None)]
            if isinstance(obj, type) and issubclass(obj, nn.Module)]


@functools.cache
def _library_module_classes() -> dict[str, type]:
    import torch.nn.modules

    classes: list[type] = [nn.Module, *_module_classes(nn)]
    for sub in vars(torch.nn.modules).values():  # e.g. NonDynamicallyQuantizableLinear, not exported by torch.nn
        if inspect.ismodule(sub) and sub.__name__.startswith("torch.nn.modules."):
            classes += [c for c in _module_classes(sub) if c.__module__ == sub.__name__]

    classes += [parametrize.ParametrizationList]
    classes += [c for c in vars(parametrizations).values()
                if isinstance(c, type) and issubclass(c, nn.Module) and c.__module__ == parametrizations.__name__]
    try:
        import torchvision.ops
        import torchvision.ops.misc

        classes += _module_classes(torchvision.ops) + _module_classes(torchvision.ops.misc)
    except ImportError:  # pragma: no cover
        pass
    return {f"{c.__module__}:{c.__qualname__}": c for c in classes}


def module_table() -> dict[str, type]:
    """``module:qualname`` → class, for every module class an untrusted file may instantiate: torch.nn,
    torchvision.ops, torch's parametrizations and fxprune's own channel-aligned modules."""

    table = dict(_library_module_classes())
    table.update({f"{c.__module__}:{c.__qualname__}": c for c in builtin_aligned_classes()})
    table.update({f"{c.__module__}:{c.__qualname__}": c for c in exact_module_classes()})
    return table


def module_class_name(cls: type) -> str | None:
    key = f"{cls.__module__}:{cls.__qualname__}"
    return key if module_table().get(key) is cls else None


# Instance attributes a loaded module may not set: torch.nn internals and hook tables.
_DENIED_MODULE_ATTRS = frozenset({"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                                  "_state_dict_hooks", "_load_state_dict_pre_hooks", "_state_dict_pre_hooks",
                                  "_load_state_dict_post_hooks", "_compiled_call_impl"})


def is_allowed_module_attr(cls: type, name: Any) -> bool:
    if not isinstance(name, str) or not _IDENT.match(name) or name.startswith("__") or name in _DENIED_MODULE_ATTRS:
        return False
    if "hook" in name:
        return False
    return not callable(inspect.getattr_static(cls, name, None))
