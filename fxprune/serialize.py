"""Save / load pruned models without executing code from the file.

A ``.fxp`` file is ``torch.save({"format", "spec", "tensors"})``: ``spec`` is JSON text holding the
graphs as data, the leaf modules as (class, attributes), the report and the resolution; ``tensors``
are the weights. It is read with ``torch.load(weights_only=True)``, so nothing is unpickled as code.

What ``load(path)`` (``trusted=False``) guarantees: before any code is generated, every name that
reaches the generated ``forward`` source is checked against a strict grammar (identifiers; dotted
paths of ``[A-Za-z0-9_]+`` without dunders), every called function is looked up in an explicit
table of tensor ops (``fxprune.safelist``: torch, ``torch.nn.functional``, ``operator`` arithmetic,
``math``, ``torchvision.ops``) by its exact name — nothing is imported or traversed from a name in
the file —, every method call must be a tensor method from an allow-list, attribute reads a short
list (``shape``, ``dtype``, ...), and module classes come from an allow-list (``torch.nn``,
``torchvision.ops``, parametrizations, fxprune's channel-aligned modules) and are built without
running their ``__init__``. Any violation, and any corrupt file, raises ``SerializationError``
naming what was refused. A custom module or function is stored pickled / by import path and is only
loaded with ``trusted=True`` — which runs code from the file, like ``torch.load``.
"""

from __future__ import annotations

import collections
import importlib
import io
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from . import safelist
from .errors import SerializationError

FORMAT = "fxprune.model/1"
_NODE_OPS = ("placeholder", "get_attr", "call_function", "call_module", "call_method", "output")
_SKIP_ATTRS = {"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"}
_OUTPUT_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


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
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if not isinstance(v, dict) or len(v) == 0:
        raise SerializationError(f"unknown value encoding {v!r:.80}")
    if "node" in v:
        if nodes is None or not isinstance(v["node"], str) or v["node"] not in nodes:
            raise SerializationError(f"reference to node {v['node']!r:.60} that is not defined before it")
        return nodes[v["node"]]
    if "float" in v:
        if v["float"] not in ("inf", "-inf", "nan"):
            raise SerializationError(f"bad float encoding {v['float']!r:.60}")
        return float(v["float"])
    if "namedtuple" in v:
        name, fields = v["namedtuple"], v["fields"]
        if not (safelist.is_identifier(name) and isinstance(fields, list)
                and all(safelist.is_identifier(f) and not f.startswith("_") for f in fields)):
            raise SerializationError(f"bad namedtuple name or fields {name!r:.60}")
        return collections.namedtuple(name, fields)(*[_dec(x, nodes) for x in v["items"]])
    if "tuple" in v:
        return tuple(_dec(x, nodes) for x in _list(v["tuple"]))
    if "dict" in v:
        return {_dec(k, nodes): _dec(x, nodes) for k, x in _list(v["dict"])}
    if "slice" in v:
        parts = _list(v["slice"])
        if len(parts) != 3:
            raise SerializationError("bad slice encoding")
        return slice(*[_dec(x, nodes) for x in parts])
    if "ellipsis" in v:
        return Ellipsis
    for key, kind in (("dtype", torch.dtype), ("memory_format", torch.memory_format), ("layout", torch.layout)):
        if key in v:
            obj = getattr(torch, v[key], None) if safelist.is_identifier(v[key]) else None
            if not isinstance(obj, kind):
                raise SerializationError(f"unknown {key} {v[key]!r:.60}")
            return obj
    if "device" in v and isinstance(v["device"], str):
        try:
            return torch.device(v["device"])
        except RuntimeError:
            raise SerializationError(f"unknown device {v['device']!r:.60}") from None
    raise SerializationError(f"unknown value encoding {v!r:.80}")


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise SerializationError(f"expected a list in the file, found {type(v).__name__}")
    return v


# ---- functions --------------------------------------------------------------------------------
def _function_ref(fn: Any) -> dict[str, Any]:
    if isinstance(fn, type) and issubclass(fn, tuple) and hasattr(fn, "_fields"):
        return {"namedtuple": fn.__name__, "fields": list(fn._fields), "module": fn.__module__}
    key = safelist.function_name(fn)
    if key is not None:
        return {"fn": key}
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if isinstance(mod, str) and isinstance(qual, str) and _import(mod, qual) is fn:
        return {"fn": f"{mod}:{qual}"}  # a custom function: loadable with trusted=True only
    raise SerializationError(f"cannot name function {fn!r} so that it can be loaded again")


def _import(mod: str, qual: str) -> Any:
    """Trusted files only: import ``mod`` and follow ``qual``."""
    try:
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError, ValueError):
        return None


def _function_from_ref(ref: Any, trusted: bool, where: str) -> Any:
    if not isinstance(ref, dict):
        raise SerializationError(f"{where}: bad function reference {ref!r:.80}")
    if "namedtuple" in ref:
        name, fields = ref.get("namedtuple"), ref.get("fields")
        if not (safelist.is_identifier(name) and isinstance(fields, list)
                and all(safelist.is_identifier(f) and not f.startswith("_") for f in fields)):
            raise SerializationError(f"{where}: bad namedtuple {name!r:.60}")
        if trusted and isinstance(ref.get("module"), str) and safelist.is_attr_path(ref["module"]):
            cls = _import(ref["module"], name)
            if isinstance(cls, type) and issubclass(cls, tuple):
                return cls
        return collections.namedtuple(name, fields)
    key = ref.get("fn")
    fn = safelist.lookup_function(key)
    if fn is not None:
        return fn
    if not isinstance(key, str) or key.count(":") != 1 or not all(map(safelist.is_attr_path, key.split(":"))):
        raise SerializationError(f"{where}: malformed function name {key!r:.80}")
    if not trusted:
        raise SerializationError(
            f"{where} calls {key}, which is not a tensor op fxprune loads from untrusted files "
            "(see fxprune.safelist). Pass trusted=True only if you trust the file: it runs its code.")
    fn = _import(*key.split(":"))
    if fn is None:
        raise SerializationError(f"{where}: cannot find {key} in this environment")
    return fn


# ---- graphs -----------------------------------------------------------------------------------
def _graph_spec(graph: fx.Graph) -> list[dict[str, Any]]:
    if type(graph._codegen) is not fx.graph.CodeGen:
        raise SerializationError("this graph uses a custom codegen (from concrete_args); save it with torch.save")
    out = []
    for n in graph.nodes:
        target = _function_ref(n.target) if n.op == "call_function" else n.target
        out.append({"name": n.name, "op": n.op, "target": target, "args": _enc(n.args), "kwargs": _enc(n.kwargs)})
    return out


def _graph_from_spec(spec: Any, trusted: bool, attrs: dict[str, Any], modules: dict[str, Any],
                     which: str) -> fx.Graph:
    """Build a graph from data, checking every name before fx can put it into generated code."""
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for i, s in enumerate(_list(spec)):
        if not isinstance(s, dict) or not {"name", "op", "target", "args", "kwargs"} <= s.keys():
            raise SerializationError(f"{which} graph, node #{i}: not a node record")
        name, op, target = s["name"], s["op"], s["target"]
        where = f"{which} graph, node {name!r:.60}"
        if not safelist.is_identifier(name) or name in nodes:
            raise SerializationError(f"{where}: node names must be unique Python identifiers")
        if op not in _NODE_OPS:
            raise SerializationError(f"{where}: unknown node op {op!r:.40}")
        if op == "placeholder" and not safelist.is_placeholder_target(target):
            raise SerializationError(f"{where}: bad placeholder target {target!r:.60}")
        if op == "get_attr" and not (safelist.is_attr_path(target) and target in attrs):
            raise SerializationError(f"{where}: get_attr target {target!r:.60} is not a stored attribute")
        if op == "call_module" and not (safelist.is_attr_path(target) and target in modules):
            raise SerializationError(f"{where}: call_module target {target!r:.60} is not a stored module")
        if op == "call_method" and not (safelist.is_identifier(target)
                                        and (trusted or safelist.is_allowed_method(target))):
            raise SerializationError(f"{where}: method {target!r:.60} is not an allowed tensor method")
        if op == "output" and target != "output":
            raise SerializationError(f"{where}: bad output target")
        if op == "call_function":
            target = _function_from_ref(target, trusted, where)
        args, kwargs = _dec(s["args"], nodes), _dec(s["kwargs"], nodes)
        if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict) \
                or not all(safelist.is_identifier(k) for k in kwargs):
            raise SerializationError(f"{where}: bad args / kwargs")
        if op == "call_function" and target is safelist.function_table()["builtins:getattr"] and not trusted \
                and (len(args) < 2 or args[1] not in safelist.ALLOWED_GETATTR):
            raise SerializationError(f"{where}: reading attribute {args[1:2]!r:.60} is not allowed")
        node = graph.create_node(op, target, tuple(args), kwargs, name=name)
        if node.name != name:
            raise SerializationError(f"{where}: node name could not be restored")
        nodes[name] = node
    if not any(n.op == "output" for n in graph.nodes):
        raise SerializationError(f"{which} graph has no output node")
    return graph


# ---- modules ----------------------------------------------------------------------------------
def _weight_norm_hooks(m: nn.Module) -> list[dict[str, Any]]:
    """Legacy ``torch.nn.utils.weight_norm`` pre-hooks, stored as data (name, dim)."""
    from torch.nn.utils.weight_norm import WeightNorm

    return [{"name": h.name, "dim": h.dim} for h in m._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


def _module_spec(prefix: str, m: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    from torch.nn.utils import parametrize

    cls = type(m)
    norms = _weight_norm_hooks(m)
    for hooks in _OUTPUT_HOOKS:
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
            attrs[k] = _enc(v)
        except SerializationError as exc:
            raise SerializationError(f"module `{prefix}` ({cls.__name__}): attribute {k}: {exc}") from None
    spec: dict[str, Any] = {"type": key, "attrs": attrs, "training": m.training, "params": {},
                            "buffers": {}, "nonpersistent": sorted(m._non_persistent_buffers_set), "children": {}}
    for k, p in m._parameters.items():
        spec["params"][k] = None if p is None else _store(tensors, f"{prefix}.{k}", p)
        if p is not None:
            spec.setdefault("requires_grad", {})[k] = p.requires_grad
    for k, b in m._buffers.items():
        spec["buffers"][k] = None if b is None else _store(tensors, f"{prefix}.{k}", b)
    for k, c in m._modules.items():
        spec["children"][k] = None if c is None else _module_spec(f"{prefix}.{k}", c, tensors)
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
    spec = _module_spec(prefix, plain, tensors)
    spec["parametrizations"] = {}
    for pname, plist in m.parametrizations.items():
        originals = {k: _store(tensors, f"{prefix}.parametrizations.{pname}.{k}", t)
                     for k, t in plist._parameters.items() if t is not None}
        grads = {k: bool(t.requires_grad) for k, t in plist._parameters.items() if t is not None}
        spec["parametrizations"][pname] = {
            "modules": [_module_spec(f"{prefix}.parametrizations.{pname}.{i}", p, tensors) for i, p in enumerate(plist)],
            "originals": originals, "requires_grad": grads}
    return spec


def _store(tensors: dict[str, torch.Tensor], key: str, t: torch.Tensor) -> str:
    tensors[key] = t.detach()
    return key


def _tensor(tensors: dict[str, Any], key: Any, where: str) -> torch.Tensor:
    t = tensors.get(key) if isinstance(key, str) else None
    if not isinstance(t, torch.Tensor):
        raise SerializationError(f"{where}: tensor {key!r:.60} is missing from the file")
    return t


def _module_from_spec(spec: Any, tensors: dict[str, Any], trusted: bool, where: str) -> nn.Module:
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise SerializationError(f"module `{where}`: not a module record")
    key = spec["type"]
    if "pickled" in spec:
        if not trusted:
            raise SerializationError(
                f"module `{where}` is a custom module of type {key:.80}, stored pickled; loading it runs code "
                "from the file. Pass trusted=True only if you trust the file.")
        raw = _tensor(tensors, spec["pickled"], f"module `{where}`")
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
        object.__setattr__(m, k, _dec(v))
    grads = spec.get("requires_grad", {})
    names = list(spec["params"]) + list(spec["buffers"]) + list(spec["children"]) + list(spec["nonpersistent"])
    if not isinstance(grads, dict) or not all(safelist.is_attr_path(k) and "." not in k for k in names):
        raise SerializationError(f"module `{where}`: bad parameter, buffer or child name")
    for k, t in spec["params"].items():
        m._parameters[k] = None if t is None else nn.Parameter(_tensor(tensors, t, f"module `{where}`"),
                                                              requires_grad=bool(grads.get(k, True)))
    for k, t in spec["buffers"].items():
        m._buffers[k] = None if t is None else _tensor(tensors, t, f"module `{where}`")
    m._non_persistent_buffers_set = set(spec["nonpersistent"])
    for k, c in spec["children"].items():
        m._modules[k] = None if c is None else _module_from_spec(c, tensors, trusted, f"{where}.{k}")
    m.training = spec["training"]
    if "weight_norm" in spec:
        _restore_weight_norm(m, spec["weight_norm"], where)
    if "parametrizations" in spec:
        _restore_parametrizations(m, spec["parametrizations"], tensors, trusted, where)
    return m


def _restore_weight_norm(m: nn.Module, norms: Any, where: str) -> None:
    from torch.nn.utils.weight_norm import WeightNorm

    for h in _list(norms):
        name, dim = h.get("name") if isinstance(h, dict) else None, h.get("dim") if isinstance(h, dict) else None
        if not (safelist.is_identifier(name) and isinstance(dim, int)) or name + "_g" not in m._parameters:
            raise SerializationError(f"module `{where}`: bad weight_norm record")
        hook = WeightNorm(name, dim)
        m.register_forward_pre_hook(hook)
        with torch.no_grad():
            setattr(m, name, hook.compute_weight(m))


def _restore_parametrizations(m: nn.Module, specs: Any, tensors: dict[str, Any], trusted: bool, where: str) -> None:
    from torch.nn.utils import parametrize

    if not isinstance(specs, dict):
        raise SerializationError(f"module `{where}`: bad parametrizations record")
    for pname, ps in specs.items():
        if not (safelist.is_identifier(pname) and isinstance(ps, dict) and pname in m._parameters):
            raise SerializationError(f"module `{where}`: bad parametrization of {pname!r:.40}")
        mods = [_module_from_spec(p, tensors, trusted, f"{where}.parametrizations.{pname}.{i}")
                for i, p in enumerate(_list(ps.get("modules")))]
        for p in mods:
            parametrize.register_parametrization(m, pname, p, unsafe=True)
        plist = m.parametrizations[pname]
        originals, grads = ps.get("originals"), ps.get("requires_grad", {})
        if not isinstance(originals, dict) or set(originals) != {k for k, t in plist._parameters.items() if t is not None}:
            raise SerializationError(f"module `{where}`: the stored originals of {pname!r} do not match")
        for k, key in originals.items():
            t = _tensor(tensors, key, f"module `{where}`")
            plist._parameters[k] = nn.Parameter(t, requires_grad=bool(grads.get(k, True)))


# ---- whole models -----------------------------------------------------------------------------
def to_state(model: nn.Module) -> dict[str, Any]:
    from .graph.copying import lookup_attr
    from .module import PrunedGraphModule

    if not isinstance(model, fx.GraphModule):
        raise SerializationError(f"fxprune.save stores compiled models (GraphModules), not {type(model).__name__}")
    for hooks in _OUTPUT_HOOKS:
        if getattr(model, hooks, None):
            raise SerializationError(
                f"the model has {hooks.strip('_').replace('_', ' ')} registered; a .fxp file does not carry hooks, "
                "so the loaded model would compute something else. Remove them before saving.")
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


def from_state(state: Any, trusted: bool = True) -> nn.Module:
    """Rebuild a model from ``to_state``'s output; every malformed or refused part raises SerializationError."""
    try:
        return _from_state(state, trusted)
    except SerializationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise SerializationError(f"corrupt fxprune model file ({type(exc).__name__}: {exc})") from None


def _from_state(state: Any, trusted: bool) -> nn.Module:
    from .module import PrunedGraphModule
    from .plan import Resolution
    from .report import Report

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SerializationError("not an fxprune model file")
    if not isinstance(state.get("spec"), str) or not isinstance(state.get("tensors"), dict):
        raise SerializationError("corrupt fxprune model file: spec or tensors missing")
    try:
        spec = json.loads(state["spec"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SerializationError(f"corrupt fxprune model file: the spec is not JSON ({exc})") from None
    tensors = state["tensors"]
    if not isinstance(spec, dict) or not isinstance(spec.get("modules"), dict) or not isinstance(spec.get("attrs"), dict) \
            or not isinstance(spec.get("graphs"), dict):
        raise SerializationError("corrupt fxprune model file: modules, attrs or graphs missing")
    class_name = spec.get("class_name", "PrunedModule")
    if not safelist.is_identifier(class_name):
        raise SerializationError(f"bad class name {class_name!r:.60}")
    for target in list(spec["modules"]) + list(spec["attrs"]):
        if not safelist.is_attr_path(target):
            raise SerializationError(f"bad module or attribute path {target!r:.60}")
    # graphs first: nothing is built from a file whose graphs are refused
    eval_graph = _graph_from_spec(spec["graphs"].get("eval"), trusted, spec["attrs"], spec["modules"], "eval")
    train_spec = spec["graphs"].get("train")
    train_graph = (_graph_from_spec(train_spec, trusted, spec["attrs"], spec["modules"], "train")
                   if train_spec is not None else None)
    root: dict[str, Any] = {}
    for target, ms in spec["modules"].items():
        root[target] = _module_from_spec(ms, tensors, trusted, target)
    for target, a in spec["attrs"].items():
        if not isinstance(a, dict):
            raise SerializationError(f"attribute `{target}`: not an attribute record")
        if "tensor" in a:
            t = _tensor(tensors, a["tensor"], f"attribute `{target}`")
            root[target] = nn.Parameter(t, requires_grad=bool(a["requires_grad"])) if a["parameter"] else t
        else:
            root[target] = _dec(a["value"])
    training = spec.get("training", False)
    if not isinstance(training, bool):
        raise SerializationError("corrupt fxprune model file: training flag")
    model = PrunedGraphModule(root, eval_graph, train_graph, class_name=class_name)
    model.training = training
    if spec.get("report"):
        model.meta["fxprune.report"] = Report.from_dict(spec["report"])
    if spec.get("resolution"):
        model.meta["fxprune.resolution"] = Resolution.from_dict(spec["resolution"])
    return model


def save(model: nn.Module, path: str | Path) -> None:
    """Write a compiled model to ``path`` (a ``.fxp`` file; see the module docstring)."""
    state = to_state(model)
    parent = Path(path).parent
    if not parent.is_dir():
        raise SerializationError(f"cannot save to {path}: the directory {parent} does not exist")
    try:
        torch.save(state, path)
    except OSError as exc:
        raise SerializationError(f"cannot save to {path}: {exc.strerror or exc}") from None


def load(path: str | Path, *, trusted: bool = False, map_location: Any = None) -> nn.Module:
    """Read a model written by ``save``. Never unpickles code unless ``trusted=True``."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SerializationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SerializationError(f"{path} is a directory, not an fxprune file") from None
    except Exception as exc:
        raise SerializationError(f"{path} is not a readable fxprune file: {exc}") from exc
    return from_state(state, trusted=trusted)
