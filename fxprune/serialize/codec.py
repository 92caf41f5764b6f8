"""Graphs and argument values as JSON-able data, and back — checking every name before fx can put it
into generated code (see ``fxprune.serialize`` for what ``trusted=False`` guarantees)."""

from __future__ import annotations

import collections
import importlib
import io
import json
import math
from typing import Any

import torch
from torch import fx, nn

from ..errors import SerializationError
from . import safelist

__all__ = ["FORMAT", "OUTPUT_HOOKS", "as_list", "decode_value", "encode_value", "graph_from_spec", "graph_spec"]

FORMAT = "fxprune.model/1"
_NODE_OPS = ("placeholder", "get_attr", "call_function", "call_module", "call_method", "output")
OUTPUT_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


# ---- values -----------------------------------------------------------------------------------
def encode_value(v: Any) -> Any:
    if isinstance(v, fx.Node):
        return {"node": v.name}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return {"namedtuple": type(v).__name__, "fields": list(v._fields), "items": [encode_value(x) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [encode_value(x) for x in v]}
    if isinstance(v, list):
        return [encode_value(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[encode_value(k), encode_value(x)] for k, x in v.items()]}
    if isinstance(v, slice):
        return {"slice": [encode_value(v.start), encode_value(v.stop), encode_value(v.step)]}
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


def decode_value(v: Any, nodes: dict[str, fx.Node] | None = None) -> Any:
    if isinstance(v, list):
        return [decode_value(x, nodes) for x in v]
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
        return collections.namedtuple(name, fields)(*[decode_value(x, nodes) for x in v["items"]])
    if "tuple" in v:
        return tuple(decode_value(x, nodes) for x in as_list(v["tuple"]))
    if "dict" in v:
        return {decode_value(k, nodes): decode_value(x, nodes) for k, x in as_list(v["dict"])}
    if "slice" in v:
        parts = as_list(v["slice"])
        if len(parts) != 3:
            raise SerializationError("bad slice encoding")
        return slice(*[decode_value(x, nodes) for x in parts])
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


def as_list(v: Any) -> list[Any]:
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
def graph_spec(graph: fx.Graph) -> list[dict[str, Any]]:
    if type(graph._codegen) is not fx.graph.CodeGen:
        raise SerializationError("this graph uses a custom codegen (from concrete_args); save it with torch.save")
    out = []
    for n in graph.nodes:
        target = _function_ref(n.target) if n.op == "call_function" else n.target
        out.append({"name": n.name, "op": n.op, "target": target, "args": encode_value(n.args), "kwargs": encode_value(n.kwargs)})
    return out


def graph_from_spec(spec: Any, trusted: bool, attrs: dict[str, Any], modules: dict[str, Any],
                     which: str) -> fx.Graph:
    """Build a graph from data, checking every name before fx can put it into generated code."""
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for i, s in enumerate(as_list(spec)):
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
        args, kwargs = decode_value(s["args"], nodes), decode_value(s["kwargs"], nodes)
        if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict) \
                or not all(safelist.is_identifier(k) for k in kwargs):
            raise SerializationError(f"{where}: bad args / kwargs")
        if op == "call_function" and target is safelist.function_table()["builtins:getattr"] and not trusted \
                and (len(args) < 2 or args[1] not in safelist.ALLOWED_GETATTR):
            raise SerializationError(f"{where}: reading attribute {args[1:2]!r:.60} is not allowed")
        node = graph.create_node(op, target, tuple(args), kwargs, name=name)
        if op == "call_function" and safelist.is_fx_wrapped(target):
            node.meta["is_wrapped"] = True  # as tracing marks it: the loaded model can be traced (pruned) again
        if node.name != name:
            raise SerializationError(f"{where}: node name could not be restored")
        nodes[name] = node
    if not any(n.op == "output" for n in graph.nodes):
        raise SerializationError(f"{which} graph has no output node")
    return graph
