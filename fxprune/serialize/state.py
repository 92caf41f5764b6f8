"""A compiled model as a state dict of JSON text and tensors (``to_state``) and back (``from_state``):
what ``.fxp`` files and pickling hold."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import fx, nn

from ..capture.copying import lookup_attr
from ..capture.graph_module import DualGraphModule
from ..errors import SerializationError
from ..passes.surgery import substitute
from ..plan import Resolution
from ..report import LAYERS_KEY, META_ATTR, REPORT_KEY, RESOLUTION_KEY, Report
from . import safelist
from .codec import FORMAT, OUTPUT_HOOKS, decode_value, encode_value, graph_from_spec, graph_spec
from .modules import module_from_spec, module_spec, store_tensor, stored_tensor

__all__ = ["from_state", "to_state"]

# ---- whole models -----------------------------------------------------------------------------
def to_state(model: nn.Module) -> dict[str, Any]:
    if not isinstance(model, fx.GraphModule):
        meta = getattr(model, META_ATTR, None)
        if isinstance(meta, dict) and LAYERS_KEY in meta:
            return _layers_state(model, meta)
        raise SerializationError(f"fxprune.save stores compiled models (GraphModules), not {type(model).__name__}")
    _refuse_hooks(model)
    graphs = {"eval": model.graph, "train": getattr(model, "train_graph", None)}
    tensors: dict[str, torch.Tensor] = {}
    modules, attrs = {}, {}
    for g in graphs.values():
        if g is None:
            continue
        for n in g.nodes:
            if n.op == "call_module" and n.target not in modules:
                modules[n.target] = module_spec(n.target, model.get_submodule(n.target), tensors)
            elif n.op == "get_attr" and n.target not in attrs:
                value = lookup_attr(model, n.target)
                if isinstance(value, torch.Tensor):
                    attrs[n.target] = {"tensor": store_tensor(tensors, n.target, value),
                                       "parameter": isinstance(value, nn.Parameter),
                                       "requires_grad": bool(value.requires_grad)}
                else:
                    attrs[n.target] = {"value": encode_value(value)}
    meta = model.meta if isinstance(getattr(model, "meta", None), dict) else {}
    rep, res = meta.get(REPORT_KEY), meta.get(RESOLUTION_KEY)
    spec = {
        "class_name": type(model).__name__,
        "graphs": {k: (graph_spec(g) if g is not None else None) for k, g in graphs.items()},
        "modules": modules, "attrs": attrs, "training": model.training,
        "report": rep.to_dict() if rep is not None else None,
        "resolution": res.to_dict() if res is not None else None,
        "pruned": isinstance(model, DualGraphModule),
    }
    return {"format": FORMAT, "spec": json.dumps(spec), "tensors": tensors}


def _refuse_hooks(model: nn.Module) -> None:
    for hooks in OUTPUT_HOOKS:
        if getattr(model, hooks, None):
            raise SerializationError(
                f"the model has {hooks.strip('_').replace('_', ' ')} registered; a .fxp file does not carry hooks, "
                "so the loaded model would compute something else. Remove them before saving.")


def _layers_state(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """A model pruned by surgery (run capture): its replaced layers and tensors, never its code.
    It loads onto the user's dense model (``from_state(..., into=dense)``)."""
    _refuse_hooks(model)
    tensors: dict[str, torch.Tensor] = {}
    layers = meta[LAYERS_KEY]
    modules = {m: module_spec(m, model.get_submodule(m), tensors) for m in layers["modules"]}
    attrs = {}
    for target in layers["tensors"]:
        value = lookup_attr(model, target)
        attrs[target] = {"tensor": store_tensor(tensors, target, value), "parameter": isinstance(value, nn.Parameter),
                         "requires_grad": bool(value.requires_grad)}
    rep, res = meta.get(REPORT_KEY), meta.get(RESOLUTION_KEY)
    spec = {"kind": "layers", "class_name": type(model).__name__, "modules": modules, "attrs": attrs,
            "training": model.training, "report": rep.to_dict() if rep is not None else None,
            "resolution": res.to_dict() if res is not None else None}
    return {"format": FORMAT, "spec": json.dumps(spec), "tensors": tensors}


def from_state(state: Any, trusted: bool = True, cls: type[DualGraphModule] = DualGraphModule,
               into: nn.Module | None = None) -> nn.Module:
    """Rebuild a model from ``to_state``'s output; every malformed or refused part raises
    SerializationError. A file of a model pruned on the run capture holds its layers only and
    is loaded onto ``into``, the dense model it was pruned from (which is not modified)."""
    try:
        return _from_state(state, trusted, cls, into)
    except SerializationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise SerializationError(f"corrupt fxprune model file ({type(exc).__name__}: {exc})") from None


def _from_state(state: Any, trusted: bool, cls: type[DualGraphModule], into: nn.Module | None) -> nn.Module:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SerializationError("not an fxprune model file")
    if not isinstance(state.get("spec"), str) or not isinstance(state.get("tensors"), dict):
        raise SerializationError("corrupt fxprune model file: spec or tensors missing")
    try:
        spec = json.loads(state["spec"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SerializationError(f"corrupt fxprune model file: the spec is not JSON ({exc})") from None
    tensors = state["tensors"]
    if isinstance(spec, dict) and spec.get("kind") == "layers":
        return _layers_from_spec(spec, tensors, trusted, into)
    if into is not None:
        raise SerializationError("this file holds a whole compiled model; load it without into=")
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
    eval_graph = graph_from_spec(spec["graphs"].get("eval"), trusted, spec["attrs"], spec["modules"], "eval")
    train_spec = spec["graphs"].get("train")
    train_graph = (graph_from_spec(train_spec, trusted, spec["attrs"], spec["modules"], "train")
                   if train_spec is not None else None)
    root: dict[str, Any] = {}
    for target, ms in spec["modules"].items():
        root[target] = module_from_spec(ms, tensors, trusted, target)
    for target, a in spec["attrs"].items():
        if not isinstance(a, dict):
            raise SerializationError(f"attribute `{target}`: not an attribute record")
        if "tensor" in a:
            t = stored_tensor(tensors, a["tensor"], f"attribute `{target}`")
            root[target] = nn.Parameter(t, requires_grad=bool(a["requires_grad"])) if a["parameter"] else t
        else:
            root[target] = decode_value(a["value"])
    training = spec.get("training", False)
    if not isinstance(training, bool):
        raise SerializationError("corrupt fxprune model file: training flag")
    model = cls(root, eval_graph, train_graph, class_name=class_name)
    model.training = training
    if spec.get("report"):
        model.meta[REPORT_KEY] = Report.from_dict(spec["report"])
    if spec.get("resolution"):
        model.meta[RESOLUTION_KEY] = Resolution.from_dict(spec["resolution"])
    return model


def _layers_from_spec(spec: dict[str, Any], tensors: dict[str, Any], trusted: bool, into: nn.Module | None) -> nn.Module:
    class_name = spec.get("class_name")
    if not isinstance(class_name, str) or not safelist.is_identifier(class_name):
        raise SerializationError(f"bad class name {class_name!r:.60}")
    if into is None:
        raise SerializationError(f"this file holds the pruned layers of a {class_name}, which keeps its own forward; "
                                 f"load it onto the dense model it was pruned from: fxprune.load(path, into=model)")
    if not isinstance(into, nn.Module) or type(into).__name__ != class_name:
        raise SerializationError(f"this file holds the pruned layers of a {class_name}, not of a "
                                 f"{type(into).__name__}")
    if not isinstance(spec.get("modules"), dict) or not isinstance(spec.get("attrs"), dict):
        raise SerializationError("corrupt fxprune model file: modules or attrs missing")
    for target in list(spec["modules"]) + list(spec["attrs"]):
        if not safelist.is_attr_path(target):
            raise SerializationError(f"bad module or attribute path {target!r:.60}")
    modules: dict[str, nn.Module] = {}
    for target, ms in spec["modules"].items():
        try:
            orig = into.get_submodule(target)
        except AttributeError:
            raise SerializationError(f"the file replaces `{target}`, which {class_name} does not have") from None
        new = module_from_spec(ms, tensors, trusted, target)
        if type(new) is not type(orig):
            raise SerializationError(f"`{target}` is a {type(orig).__name__} in the model and a {type(new).__name__} "
                                     "in the file")
        modules[target] = new
    attrs: dict[str, torch.Tensor] = {}
    for target, a in spec["attrs"].items():
        if not isinstance(a, dict) or "tensor" not in a:
            raise SerializationError(f"attribute `{target}`: not a tensor record")
        try:
            orig_t = lookup_attr(into, target)
        except AttributeError:
            raise SerializationError(f"the file replaces `{target}`, which {class_name} does not have") from None
        if not isinstance(orig_t, torch.Tensor):
            raise SerializationError(f"`{target}` is not a tensor in the model")
        t = stored_tensor(tensors, a["tensor"], f"attribute `{target}`")
        attrs[target] = nn.Parameter(t, requires_grad=bool(a["requires_grad"])) if a["parameter"] else t
    training = spec.get("training", False)
    if not isinstance(training, bool):
        raise SerializationError("corrupt fxprune model file: training flag")
    model = substitute(into, modules, attrs)
    model.training = training
    meta: dict[str, Any] = {LAYERS_KEY: {"modules": list(modules), "tensors": list(attrs)}}
    if spec.get("report"):
        meta[REPORT_KEY] = Report.from_dict(spec["report"])
    if spec.get("resolution"):
        meta[RESOLUTION_KEY] = Resolution.from_dict(spec["resolution"])
    setattr(model, META_ATTR, meta)
    return model
