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
from ..plan import Resolution
from ..report import META_ATTR, REPORT_KEY, RESOLUTION_KEY, Report
from . import safelist
from .codec import FORMAT, OUTPUT_HOOKS, decode_value, encode_value, graph_from_spec, graph_spec
from .modules import module_from_spec, module_spec, store_tensor, stored_tensor

__all__ = ["from_state", "to_state"]

# ---- whole models -----------------------------------------------------------------------------
def to_state(model: nn.Module) -> dict[str, Any]:
    if not isinstance(model, fx.GraphModule):
        if isinstance(getattr(model, META_ATTR, None), dict):
            raise SerializationError(
                f"this {type(model).__name__} was pruned on the run capture and keeps its own Python forward; a .fxp "
                "file holds data, never code, so it cannot hold this model. Save its weights with "
                "torch.save(model.state_dict(), path) and its channels with fxprune.resolution_of(model).to_json(path); "
                "rebuild with fxprune.compile(dense_model, resolution=Resolution.from_json(path), example_inputs=...) "
                "and load_state_dict.")
        raise SerializationError(f"fxprune.save stores compiled models (GraphModules), not {type(model).__name__}")
    for hooks in OUTPUT_HOOKS:
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


def from_state(state: Any, trusted: bool = True, cls: type[DualGraphModule] = DualGraphModule) -> nn.Module:
    """Rebuild a model from ``to_state``'s output; every malformed or refused part raises SerializationError."""
    try:
        return _from_state(state, trusted, cls)
    except SerializationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise SerializationError(f"corrupt fxprune model file ({type(exc).__name__}: {exc})") from None


def _from_state(state: Any, trusted: bool, cls: type[DualGraphModule]) -> nn.Module:
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
