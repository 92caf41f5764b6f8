"""Save / load pruned models without executing code from the file.

A ``.fxp`` file is ``torch.save({"format", "spec", "tensors"})``: ``spec`` is JSON text holding
the graphs as data (ops named by qualified name, resolved only inside torch, operator, math and
torchvision.ops), the leaf modules as (class, attributes) with classes from ``torch.nn`` and
``torchvision.ops``, the report and the resolution; ``tensors`` are the weights. It is read with
``torch.load(weights_only=True)``, so nothing in it is unpickled as code. A module or function
outside those namespaces (a custom leaf) is stored pickled and needs ``load(path, trusted=True)``.
"""

from __future__ import annotations

import collections
import importlib
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from .errors import SerializationError

log = logging.getLogger(__name__)

FORMAT = "fxprune.model/1"
_SAFE_MODULE_PREFIXES = ("torch.nn.", "torchvision.ops.")
_SAFE_BUILTINS = {"getattr": getattr}
_SKIP_ATTRS = {"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"}


# ---- values -----------------------------------------------------------------------------------
def _enc(v: Any, names: dict[fx.Node, str] | None = None) -> Any:
    if isinstance(v, fx.Node):
        return {"node": v.name}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return {"namedtuple": type(v).__name__, "fields": list(v._fields), "items": [_enc(x) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if isinstance(v, slice):
        return {"slice": [_enc(v.start), _enc(v.stop), _enc(v.step)]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, torch.dtype):
        return {"dtype": str(v).removeprefix("torch.")}
    if isinstance(v, torch.device):
        return {"device": str(v)}
    if isinstance(v, torch.memory_format):
        return {"memory_format": str(v).removeprefix("torch.")}
    if isinstance(v, torch.layout):
        return {"layout": str(v).removeprefix("torch.")}
    raise SerializationError(f"cannot store a value of type {type(v).__name__} in a .fxp file: {v!r}")


def _dec(v: Any, nodes: dict[str, fx.Node] | None = None) -> Any:
    if isinstance(v, list):
        return [_dec(x, nodes) for x in v]
    if not isinstance(v, dict):
        return v
    if "node" in v:
        return nodes[v["node"]]
    if "float" in v:
        return float(v["float"])
    if "namedtuple" in v:
        return collections.namedtuple(v["namedtuple"], v["fields"])(*[_dec(x, nodes) for x in v["items"]])
    if "tuple" in v:
        return tuple(_dec(x, nodes) for x in v["tuple"])
    if "dict" in v:
        return {_dec(k, nodes): _dec(x, nodes) for k, x in v["dict"]}
    if "slice" in v:
        return slice(*[_dec(x, nodes) for x in v["slice"]])
    if "ellipsis" in v:
        return Ellipsis
    for key, kind in (("dtype", torch.dtype), ("memory_format", torch.memory_format), ("layout", torch.layout)):
        if key in v:
            obj = getattr(torch, v[key], None)
            if not isinstance(obj, kind):
                raise SerializationError(f"unknown {key} {v[key]!r}")
            return obj
    if "device" in v:
        return torch.device(v["device"])
    raise SerializationError(f"unknown value encoding {v!r}")


# ---- functions --------------------------------------------------------------------------------
def _function_ref(fn: Any) -> dict[str, Any]:
    if isinstance(fn, type) and issubclass(fn, tuple) and hasattr(fn, "_fields"):
        return {"namedtuple": fn.__name__, "fields": list(fn._fields), "module": fn.__module__}
    name = getattr(fn, "__name__", None)
    candidates = [(getattr(fn, "__module__", None), getattr(fn, "__qualname__", name))]
    candidates += [(m, name) for m in ("torch", "torch.nn.functional", "operator", "math", "builtins")]
    for mod, qual in candidates:
        if mod and qual and _import(mod, qual) is fn:
            return {"fn": f"{mod}:{qual}"}
    raise SerializationError(f"cannot name function {fn!r} so that it can be loaded again")


_IMPORTABLE_ROOTS = ("torch", "operator", "_operator", "math", "torchvision", "builtins")


def _import(mod: str, qual: str) -> Any:
    try:
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError):
        return None


def _is_safe_function(fn: Any, mod: str) -> bool:
    """Ops that compute on tensors and do nothing else (no I/O, no code loading)."""
    from .graph.rules import REGISTRY

    try:
        if fn in REGISTRY.functions:
            return True
    except TypeError:
        pass
    if fn is getattr or fn is torch._assert or mod in ("operator", "_operator", "math"):
        return True
    if mod.startswith(("torch.nn.functional", "torch._C._nn", "torch.fft", "torch.linalg", "torch.special",
                       "torchvision.ops", "torchvision.models")):
        return True
    name = getattr(fn, "__name__", "")
    return getattr(torch._C._VariableFunctions, name, None) is fn or getattr(torch.Tensor, name, None) is fn


def _resolve(mod: str, qual: str, *, trusted: bool) -> Any:
    root = mod.split(".")[0]
    if not trusted and root not in _IMPORTABLE_ROOTS:
        raise SerializationError(
            f"the file calls {mod}.{qual}; fxprune only imports torch, torchvision, operator and math "
            "when loading untrusted files. Pass trusted=True if you trust the file.")
    obj = _import(mod, qual)
    if obj is None:
        raise SerializationError(f"cannot find {mod}:{qual} in this environment")
    if not trusted and not _is_safe_function(obj, mod):
        raise SerializationError(
            f"the file calls {mod}.{qual}, which is not a tensor op fxprune loads without trust; "
            "pass trusted=True if you trust the file")
    return obj


def _function_from_ref(ref: dict[str, Any], trusted: bool) -> Any:
    if "namedtuple" in ref:
        if trusted:
            cls = _import(ref["module"], ref["namedtuple"])
            if cls is not None:
                return cls
        return collections.namedtuple(ref["namedtuple"], ref["fields"])
    mod, qual = ref["fn"].split(":")
    return _resolve(mod, qual, trusted=trusted)


# ---- graphs -----------------------------------------------------------------------------------
def _graph_spec(graph: fx.Graph) -> list[dict[str, Any]]:
    if type(graph._codegen) is not fx.graph.CodeGen:
        raise SerializationError("this graph uses a custom codegen (from concrete_args); save it with torch.save")
    out = []
    for n in graph.nodes:
        target = _function_ref(n.target) if n.op == "call_function" else n.target
        out.append({"name": n.name, "op": n.op, "target": target, "args": _enc(n.args), "kwargs": _enc(n.kwargs)})
    return out


def _graph_from_spec(spec: list[dict[str, Any]], trusted: bool) -> fx.Graph:
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for s in spec:
        target = _function_from_ref(s["target"], trusted) if s["op"] == "call_function" else s["target"]
        node = graph.create_node(s["op"], target, _dec(s["args"], nodes), _dec(s["kwargs"], nodes), name=s["name"])
        if node.name != s["name"]:
            raise SerializationError(f"node name {s['name']!r} could not be restored")
        nodes[s["name"]] = node
    return graph


# ---- modules ----------------------------------------------------------------------------------
def _is_aligned(cls: Any) -> bool:
    """fxprune's own channel-aligned modules (style transforms) are stored as data like torch.nn
    layers: their class comes from the installed fxprune, their attributes from the file."""
    from .graph.rules.aligned import ChannelAligned

    return isinstance(cls, type) and issubclass(cls, ChannelAligned) and cls.__module__.startswith("fxprune.")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _module_spec(prefix: str, m: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    cls = type(m)
    if not cls.__module__.startswith(_SAFE_MODULE_PREFIXES) and cls is not nn.Module and not _is_aligned(cls):
        buf = io.BytesIO()
        torch.save(m, buf)
        key = f"{prefix}#pickle"
        tensors[key] = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        return {"type": _qualname(cls), "pickled": key}
    attrs = {}
    for k, v in vars(m).items():
        if k in _SKIP_ATTRS or "hook" in k:
            if "hook" in k and v:
                log.warning("module %s: hooks are not saved", prefix)
            continue
        try:
            attrs[k] = _enc(v)
        except SerializationError as exc:
            raise SerializationError(f"module `{prefix}` ({cls.__name__}): attribute {k}: {exc}") from None
    spec: dict[str, Any] = {"type": _qualname(cls), "attrs": attrs, "training": m.training, "params": {},
                            "buffers": {}, "nonpersistent": sorted(m._non_persistent_buffers_set), "children": {}}
    for k, p in m._parameters.items():
        spec["params"][k] = None if p is None else _store(tensors, f"{prefix}.{k}", p)
        if p is not None:
            spec.setdefault("requires_grad", {})[k] = p.requires_grad
    for k, b in m._buffers.items():
        spec["buffers"][k] = None if b is None else _store(tensors, f"{prefix}.{k}", b)
    for k, c in m._modules.items():
        spec["children"][k] = None if c is None else _module_spec(f"{prefix}.{k}", c, tensors)
    return spec


def _store(tensors: dict[str, torch.Tensor], key: str, t: torch.Tensor) -> str:
    tensors[key] = t.detach()
    return key


def _module_from_spec(spec: dict[str, Any], tensors: dict[str, torch.Tensor], trusted: bool) -> nn.Module:
    mod_name, qual = spec["type"].split(":")
    if "pickled" in spec:
        if not trusted:
            raise SerializationError(
                f"the file holds a custom module of type {mod_name}.{qual}, stored pickled; loading it runs code. "
                "Pass trusted=True if you trust the file.")
        return torch.load(io.BytesIO(tensors[spec["pickled"]].numpy().tobytes()), weights_only=False)
    aligned = mod_name.startswith("fxprune.") and _is_aligned(_import(mod_name, qual))
    if not (mod_name + ".").startswith(_SAFE_MODULE_PREFIXES) and f"{mod_name}.{qual}" != "torch.nn.modules.module.Module" \
            and not aligned:
        if not trusted:
            raise SerializationError(f"module type {mod_name}.{qual} is outside torch.nn / torchvision.ops")
    cls = _import(mod_name, qual)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise SerializationError(f"{mod_name}.{qual} is not a torch.nn.Module class")
    m = cls.__new__(cls)
    nn.Module.__init__(m)
    for k, v in spec["attrs"].items():
        object.__setattr__(m, k, _dec(v))
    grads = spec.get("requires_grad", {})
    for k, key in spec["params"].items():
        m._parameters[k] = None if key is None else nn.Parameter(tensors[key], requires_grad=grads.get(k, True))
    for k, key in spec["buffers"].items():
        m._buffers[k] = None if key is None else tensors[key]
    m._non_persistent_buffers_set = set(spec["nonpersistent"])
    for k, c in spec["children"].items():
        m._modules[k] = None if c is None else _module_from_spec(c, tensors, trusted)
    m.training = spec["training"]
    return m


# ---- whole models -----------------------------------------------------------------------------
def to_state(model: nn.Module) -> dict[str, Any]:
    from .graph.copying import lookup_attr
    from .module import PrunedGraphModule

    if not isinstance(model, fx.GraphModule):
        raise SerializationError(f"fxprune.save stores compiled models (GraphModules), not {type(model).__name__}")
    graphs = {"eval": model.graph, "train": getattr(model, "train_graph", None)}
    tensors: dict[str, torch.Tensor] = {}
    modules, attrs = {}, {}
    for g in graphs.values():
        if g is None:
            continue
        for n in g.nodes:
            if n.op == "call_module" and n.target not in modules:
                modules[n.target] = _module_spec(n.target, model.get_submodule(n.target), tensors)
            elif n.op == "get_attr" and n.target not in attrs:
                value = lookup_attr(model, n.target)
                if isinstance(value, torch.Tensor):
                    attrs[n.target] = {"tensor": _store(tensors, n.target, value),
                                       "parameter": isinstance(value, nn.Parameter),
                                       "requires_grad": bool(value.requires_grad)}
                else:
                    attrs[n.target] = {"value": _enc(value)}
    meta = model.meta if isinstance(getattr(model, "meta", None), dict) else {}
    rep, res = meta.get("fxprune.report"), meta.get("fxprune.resolution")
    spec = {
        "class_name": type(model).__name__,
        "graphs": {k: (_graph_spec(g) if g is not None else None) for k, g in graphs.items()},
        "modules": modules, "attrs": attrs, "training": model.training,
        "report": rep.to_dict() if rep is not None else None,
        "resolution": res.to_dict() if res is not None else None,
        "pruned": isinstance(model, PrunedGraphModule),
    }
    return {"format": FORMAT, "spec": json.dumps(spec), "tensors": tensors}


def from_state(state: dict[str, Any], trusted: bool = True) -> nn.Module:
    from .module import PrunedGraphModule
    from .plan import Resolution
    from .report import Report

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SerializationError("not an fxprune model file")
    spec, tensors = json.loads(state["spec"]), state["tensors"]
    root: dict[str, Any] = {}
    for target, ms in spec["modules"].items():
        root[target] = _module_from_spec(ms, tensors, trusted)
    for target, a in spec["attrs"].items():
        if "tensor" in a:
            t = tensors[a["tensor"]]
            root[target] = nn.Parameter(t, requires_grad=a["requires_grad"]) if a["parameter"] else t
        else:
            root[target] = _dec(a["value"])
    eval_graph = _graph_from_spec(spec["graphs"]["eval"], trusted)
    train_graph = _graph_from_spec(spec["graphs"]["train"], trusted) if spec["graphs"]["train"] else None
    model = PrunedGraphModule(root, eval_graph, train_graph, class_name=spec["class_name"])
    model.training = spec["training"]
    if spec.get("report"):
        model.meta["fxprune.report"] = Report.from_dict(spec["report"])
    if spec.get("resolution"):
        model.meta["fxprune.resolution"] = Resolution.from_dict(spec["resolution"])
    return model


def save(model: nn.Module, path: str | Path) -> None:
    """Write a compiled model to ``path`` (a ``.fxp`` file; see the module docstring)."""
    torch.save(to_state(model), path)


def load(path: str | Path, *, trusted: bool = False, map_location: Any = None) -> nn.Module:
    """Read a model written by ``save``. Never unpickles code unless ``trusted=True``."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise SerializationError(f"{path} is not a readable fxprune file: {exc}") from exc
    return from_state(state, trusted=trusted)
