"""Leaf modules as (class, attributes, tensors) data and back, built without running ``__init__``;
weight-norm hooks and parametrizations are stored as data too."""

from __future__ import annotations

import collections
import importlib
import io
import json
import math
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm

from ..errors import SerializationError
from . import safelist

from .codec import OUTPUT_HOOKS, as_list, decode_value, encode_value

__all__ = ["module_from_spec", "module_spec", "store_tensor", "stored_tensor"]

_SKIP_ATTRS = {"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"}


# ---- modules ----------------------------------------------------------------------------------
def _weight_norm_hooks(m: nn.Module) -> list[dict[str, Any]]:
    """Legacy ``torch.nn.utils.weight_norm`` pre-hooks, stored as data (name, dim)."""
    return [{"name": h.name, "dim": h.dim} for h in m._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


def module_spec(prefix: str, m: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    cls = type(m)
    norms = _weight_norm_hooks(m)
    for hooks in OUTPUT_HOOKS:
        n = len(getattr(m, hooks, None) or {}) - (len(norms) if hooks == "_forward_pre_hooks" else 0)
        if n > 0:
            raise SerializationError(
                f"module `{prefix}` ({cls.__name__}) has {hooks.strip('_').replace('_', ' ')} registered; a .fxp "
                "file does not carry hooks, so the loaded model would compute something else. Remove the hooks "
                "(handle.remove()) before saving, or save with torch.save(model) if you need them.")
    if isinstance(m, torch.jit.ScriptModule):
        raise SerializationError(
            f"module `{prefix}` is a TorchScript module; a .fxp file cannot store it. Compile the model with "
            "the Python module in its place (not torch.jit.script-ed), or keep the pruned model in memory.")
    if parametrize.is_parametrized(m):
        return _parametrized_spec(prefix, m, tensors)
    key = safelist.module_class_name(cls)
    if key is None:
        buf = io.BytesIO()
        torch.save(m, buf)
        store = f"{prefix}#pickle"
        tensors[store] = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        return {"type": f"{cls.__module__}:{cls.__qualname__}", "pickled": store}
    attrs = {}
    computed = {h["name"] for h in norms}  # recomputed by the weight_norm hook on load
    for k, v in vars(m).items():
        if k in computed:
            continue
        if k in _SKIP_ATTRS or "hook" in k:  # output-changing hooks were refused above; state-dict hooks
            continue                         # (e.g. weight_norm's legacy-checkpoint converter) do not compute
        if not safelist.is_allowed_module_attr(cls, k):
            raise SerializationError(f"module `{prefix}` ({cls.__name__}): attribute {k!r} cannot be stored as data")
        try:
            attrs[k] = encode_value(v)
        except SerializationError as exc:
            raise SerializationError(f"module `{prefix}` ({cls.__name__}): attribute {k}: {exc}") from None
    spec: dict[str, Any] = {"type": key, "attrs": attrs, "training": m.training, "params": {},
                            "buffers": {}, "nonpersistent": sorted(m._non_persistent_buffers_set), "children": {}}
    for k, p in m._parameters.items():
        spec["params"][k] = None if p is None else store_tensor(tensors, f"{prefix}.{k}", p)
        if p is not None:
            spec.setdefault("requires_grad", {})[k] = p.requires_grad
    for k, b in m._buffers.items():
        spec["buffers"][k] = None if b is None else store_tensor(tensors, f"{prefix}.{k}", b)
    for k, c in m._modules.items():
        spec["children"][k] = None if c is None else module_spec(f"{prefix}.{k}", c, tensors)
    if norms:
        spec["weight_norm"] = norms
    return spec


def _parametrized_spec(prefix: str, m: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A ``torch.nn.utils.parametrize``-d module: stored as its original class plus, per
    parametrized tensor, the parametrization modules (allow-listed torch classes), the computed
    tensor and the stored originals; ``load`` registers them again."""
    base = type(m).__bases__[0]
    plain = base.__new__(base)
    object.__setattr__(plain, "__dict__", {k: v for k, v in vars(m).items() if k != "_modules"})
    plain._modules = {k: c for k, c in m._modules.items() if k != "parametrizations"}
    plain._parameters = dict(m._parameters)
    for pname, plist in m.parametrizations.items():
        plain._parameters[pname] = nn.Parameter(getattr(m, pname).detach(), requires_grad=False)
    spec = module_spec(prefix, plain, tensors)
    spec["parametrizations"] = {}
    for pname, plist in m.parametrizations.items():
        originals = {k: store_tensor(tensors, f"{prefix}.parametrizations.{pname}.{k}", t)
                     for k, t in plist._parameters.items() if t is not None}
        grads = {k: bool(t.requires_grad) for k, t in plist._parameters.items() if t is not None}
        spec["parametrizations"][pname] = {
            "modules": [module_spec(f"{prefix}.parametrizations.{pname}.{i}", p, tensors) for i, p in enumerate(plist)],
            "originals": originals, "requires_grad": grads}
    return spec


def store_tensor(tensors: dict[str, torch.Tensor], key: str, t: torch.Tensor) -> str:
    tensors[key] = t.detach()
    return key


def stored_tensor(tensors: dict[str, Any], key: Any, where: str) -> torch.Tensor:
    t = tensors.get(key) if isinstance(key, str) else None
    if not isinstance(t, torch.Tensor):
        raise SerializationError(f"{where}: tensor {key!r:.60} is missing from the file")
    return t


def module_from_spec(spec: Any, tensors: dict[str, Any], trusted: bool, where: str) -> nn.Module:
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise SerializationError(f"module `{where}`: not a module record")
    key = spec["type"]
    if "pickled" in spec:
        if not trusted:
            raise SerializationError(
                f"module `{where}` is a custom module of type {key:.80}, stored pickled; loading it runs code "
                "from the file. Pass trusted=True only if you trust the file.")
        raw = stored_tensor(tensors, spec["pickled"], f"module `{where}`")
        return torch.load(io.BytesIO(raw.numpy().tobytes()), weights_only=False)
    cls = safelist.module_table().get(key)
    if cls is None:
        hint = " (import the fxprune module that defines it first)" if key.startswith("fxprune.") else ""
        raise SerializationError(f"module `{where}`: class {key:.80} is not one fxprune builds from a file{hint}")
    for field, kind in (("attrs", dict), ("params", dict), ("buffers", dict), ("children", dict),
                        ("nonpersistent", list), ("training", bool)):
        if not isinstance(spec.get(field), kind):
            raise SerializationError(f"module `{where}`: field {field!r} missing or of the wrong type")
    m = cls.__new__(cls)
    nn.Module.__init__(m)
    for k, v in spec["attrs"].items():
        if not safelist.is_allowed_module_attr(cls, k):
            raise SerializationError(f"module `{where}` ({cls.__name__}): attribute {k!r:.60} is not allowed")
        object.__setattr__(m, k, decode_value(v))
    grads = spec.get("requires_grad", {})
    names = list(spec["params"]) + list(spec["buffers"]) + list(spec["children"]) + list(spec["nonpersistent"])
    if not isinstance(grads, dict) or not all(safelist.is_attr_path(k) and "." not in k for k in names):
        raise SerializationError(f"module `{where}`: bad parameter, buffer or child name")
    for k, t in spec["params"].items():
        m._parameters[k] = None if t is None else nn.Parameter(stored_tensor(tensors, t, f"module `{where}`"),
                                                              requires_grad=bool(grads.get(k, True)))
    for k, t in spec["buffers"].items():
        m._buffers[k] = None if t is None else stored_tensor(tensors, t, f"module `{where}`")
    m._non_persistent_buffers_set = set(spec["nonpersistent"])
    for k, c in spec["children"].items():
        m._modules[k] = None if c is None else module_from_spec(c, tensors, trusted, f"{where}.{k}")
    m.training = spec["training"]
    if "weight_norm" in spec:
        _restore_weight_norm(m, spec["weight_norm"], where)
    if "parametrizations" in spec:
        _restore_parametrizations(m, spec["parametrizations"], tensors, trusted, where)
    return m


def _restore_weight_norm(m: nn.Module, norms: Any, where: str) -> None:
    for h in as_list(norms):
        name, dim = h.get("name") if isinstance(h, dict) else None, h.get("dim") if isinstance(h, dict) else None
        if not (safelist.is_identifier(name) and isinstance(dim, int)) or name + "_g" not in m._parameters:
            raise SerializationError(f"module `{where}`: bad weight_norm record")
        hook = WeightNorm(name, dim)
        m.register_forward_pre_hook(hook)
        with torch.no_grad():
            setattr(m, name, hook.compute_weight(m))


def _restore_parametrizations(m: nn.Module, specs: Any, tensors: dict[str, Any], trusted: bool, where: str) -> None:
    if not isinstance(specs, dict):
        raise SerializationError(f"module `{where}`: bad parametrizations record")
    for pname, ps in specs.items():
        if not (safelist.is_identifier(pname) and isinstance(ps, dict) and pname in m._parameters):
            raise SerializationError(f"module `{where}`: bad parametrization of {pname!r:.40}")
        mods = [module_from_spec(p, tensors, trusted, f"{where}.parametrizations.{pname}.{i}")
                for i, p in enumerate(as_list(ps.get("modules")))]
        for p in mods:
            parametrize.register_parametrization(m, pname, p, unsafe=True)
        plist = m.parametrizations[pname]
        originals, grads = ps.get("originals"), ps.get("requires_grad", {})
        if not isinstance(originals, dict) or set(originals) != {k for k, t in plist._parameters.items() if t is not None}:
            raise SerializationError(f"module `{where}`: the stored originals of {pname!r} do not match")
        for k, key in originals.items():
            t = stored_tensor(tensors, key, f"module `{where}`")
            plist._parameters[k] = nn.Parameter(t, requires_grad=bool(grads.get(k, True)))
