"""The second capture path: ``torch.export`` for models symbolic tracing cannot read.

``torch.fx.symbolic_trace`` runs ``forward`` on proxies, so Python that needs real values (a
branch on the input's shape, a loop over a list of images, einops' shape parsing, HuggingFace's
mask building) fails. ``torch.export.export(..., strict=False)`` runs the real Python ``forward``
on fake tensors with concrete shapes: such control flow is resolved at capture time and loops
are unrolled. Non-strict rather than strict (TorchDynamo): strict export has to understand every
Python construct and library the forward touches and refuses what it cannot (einops' caches,
HuggingFace's output classes); non-strict runs Python as Python and records only tensor ops.
The price is the same for both: the graph is specialised to the example inputs' shapes and to
the values of non-tensor arguments, which the captured module then checks (``expect_shape``).

The exported graph is ATen-level with parameters lifted to inputs. It is translated back to the
level fx tracing produces, so that every channel rule is still written once:

- each call of a leaf module (the same leaf policy as fx tracing) becomes one ``call_module`` node
  with the module's original qualified name: forward hooks record, during export, which graph
  values each leaf call received and returned;
- parameters, buffers and constants used outside leaves become ``get_attr`` nodes with their
  original names, so the pruned model keeps the model's module names and state-dict keys;
- other ATen ops become the torch-level function or ``Tensor`` method of the same semantics
  (``aten.view.default(x, s)`` -> ``x.view(s)``, ``aten.slice.Tensor`` -> ``x[..., a:b]``,
  ``aten.batch_norm`` -> ``F.batch_norm`` with its arguments reordered) when the rule table
  knows that op; ops it does not know stay ATen ops (barriers, counted by FlopCounterMode);
- inputs and outputs keep their structure (lists of images, dicts, output dataclasses).

The translated graph is checked against the model on the example inputs before it is used.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch import fx, nn

from ..errors import FxPruneError, TraceError
from .copying import clone_inputs, keep_rng, lookup_attr
from .trace import FxTracer, TracedModel, _check_reserved_names, _reads_training, training_mode

__all__ = ["ExportCapture", "ShapeSpecialisationError", "capture_export", "expect_shape", "expect_value", "export_trace"]

log = logging.getLogger(__name__)

_INT64_MAX = 2 ** 63 - 1


class ShapeSpecialisationError(FxPruneError, ValueError):
    """A model captured by torch.export was called with inputs of other shapes than the ones it
    was specialised to."""


@fx.wrap
def expect_shape(x: Any, shape: tuple[int, ...], name: str) -> None:
    """Raise unless ``x`` has ``shape``: the guard a model captured by torch.export runs on each
    tensor input (its graph holds shape constants of the example inputs)."""
    got = tuple(x.shape) if isinstance(x, torch.Tensor) else None
    if got != tuple(shape):
        raise ShapeSpecialisationError(
            f"input `{name}` has shape {got if got is not None else type(x).__name__}, but this model was captured "
            f"with torch.export for shape {tuple(shape)} and its graph is specialised to it. Call it with inputs of "
            "that shape, or compile again with example_inputs of the shape you need.")


torch.fx.node.has_side_effect(expect_shape)


@fx.wrap
def expect_value(x: Any, value: Any, name: str) -> None:
    """Raise unless ``x == value``: the guard for a non-tensor argument fixed at capture."""
    if type(x) is not type(value) or x != value:
        raise ShapeSpecialisationError(
            f"argument `{name}` is {x!r}, but this model was captured with torch.export for {name}={value!r} and "
            "its graph is specialised to it. Compile again with the value you need.")


torch.fx.node.has_side_effect(expect_value)


# ---- the leaf calls seen during export -----------------------------------------------------------
@dataclass(frozen=True)
class _Ref:
    """A graph value in a recorded leaf call: the export graph node of that name."""

    name: str


@dataclass
class _LeafCall:
    fqn: str
    args: Any
    kwargs: Any
    out: Any
    ok: bool = True  # False: something in the call cannot be written as a graph node argument


_SIMPLE = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout)


class _Recorder:
    """Forward hooks on the outermost leaf modules that write down, per call, the names of the
    graph nodes holding the call's tensor arguments and results."""

    def __init__(self, model: nn.Module, is_leaf: Callable[[nn.Module, str], bool]) -> None:
        self.calls: list[_LeafCall] = []
        self.leaves: dict[str, nn.Module] = {}
        self._handles: list[Any] = []
        skip: list[str] = []
        for name, mod in model.named_modules():
            if not name or any(name.startswith(s + ".") for s in skip):
                continue
            if is_leaf(mod, name) and type(mod).forward is not nn.Module.forward:
                # (containers such as ModuleList / ModuleDict have no forward: their items are the calls)
                skip.append(name)
                self.leaves[name] = mod
        self._fqn = {id(m): n for n, m in self.leaves.items()}
        self._pending: dict[int, list[Any]] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        for mod in self.leaves.values():
            self._handles.append(mod.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._handles.append(mod.register_forward_hook(self._hook, with_kwargs=True))
        try:
            yield
        finally:
            for h in self._handles:
                h.remove()
            self._handles.clear()

    placeholders: list[str] | None = None  # the trace-time graph's placeholder names, in order

    def _refs_of(self, obj: Any) -> tuple[Any, bool]:
        """``obj`` with each tensor replaced by a ``_Ref`` to the trace-time node holding it."""
        from torch.fx.experimental import proxy_tensor

        mode = proxy_tensor.get_proxy_mode()
        if mode is None:
            return None, False
        if self.placeholders is None:
            self.placeholders = [n.name for n in mode.tracer.graph.nodes if n.op == "placeholder"]
        ok = True

        def ref(v: Any) -> Any:
            nonlocal ok
            if isinstance(v, torch.Tensor):
                try:
                    return _Ref(proxy_tensor.get_proxy_slot(v, mode.tracer).proxy.node.name)
                except Exception:  # noqa: BLE001 - a tensor the tracer does not know: not collapsible
                    ok = False
                    return None
            if type(v) in (tuple, list):
                return type(v)(ref(x) for x in v)
            if type(v) is dict:
                return {k: ref(x) for k, x in v.items()}
            if isinstance(v, (*_SIMPLE, slice)):
                return v
            ok = False
            return None

        return ref(obj), ok

    def _pre_hook(self, mod: nn.Module, args: Any, kwargs: Any) -> None:
        # arguments are read before the call: an in-place layer (ReLU(inplace=True)) moves its
        # input tensor to its own output node
        (a, k), ok = self._refs_of((tuple(args), dict(kwargs)))
        self._pending.setdefault(id(mod), []).append((a, k, ok))

    def _hook(self, mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        pending = self._pending.get(id(mod))
        if not pending:
            return
        a, k, ok = pending.pop()
        o, ok_out = self._refs_of(out)
        self.calls.append(_LeafCall(self._fqn[id(mod)], a, k, o, ok and ok_out))


def _rename(recorder: _Recorder, ep: Any) -> list[_LeafCall]:
    """The recorded calls with trace-time placeholder names replaced by the exported graph's
    (export renames placeholders, in the same order; other nodes keep their names)."""
    # constants are lifted to placeholders after tracing (at trace time they are attributes)
    constants = {spec.arg.name for spec in ep.graph_signature.input_specs if spec.kind.name == "CONSTANT_TENSOR"}
    final = [n.name for n in ep.graph.nodes if n.op == "placeholder" and n.name not in constants]
    before = recorder.placeholders or []
    if len(before) != len(final):
        return [_LeafCall(c.fqn, c.args, c.kwargs, c.out, False) for c in recorder.calls]
    table = dict(zip(before, final))

    def fix(obj: Any) -> Any:
        if isinstance(obj, _Ref):
            return _Ref(table.get(obj.name, obj.name))
        if type(obj) in (tuple, list):
            return type(obj)(fix(x) for x in obj)
        if type(obj) is dict:
            return {k: fix(v) for k, v in obj.items()}
        return obj

    return [_LeafCall(c.fqn, fix(c.args), fix(c.kwargs), fix(c.out), c.ok) for c in recorder.calls]


def _refs(obj: Any) -> list[str]:
    return [x.name for x in pytree.tree_leaves(obj, is_leaf=lambda v: isinstance(v, _Ref)) if isinstance(x, _Ref)]


# ---- ATen -> torch level ------------------------------------------------------------------------
def _drop_from(n: int) -> Callable[[tuple, dict], tuple[tuple, dict]]:
    return lambda a, k: (tuple(a[:n]), {})


def _batch_norm(a: tuple, k: dict) -> tuple[tuple, dict]:
    x, w, b, rm, rv, training, momentum, eps = a[:8]
    return (x, rm, rv, w, b, training, momentum, eps), {}


def _embedding(a: tuple, k: dict) -> tuple[tuple, dict]:
    weight, indices = a[:2]
    padding_idx = a[2] if len(a) > 2 else -1
    return (indices, weight), ({"padding_idx": padding_idx} if padding_idx != -1 else {})


def _pad(a: tuple, k: dict) -> tuple[tuple, dict]:
    return (a[0], list(a[1])), {"value": a[2] if len(a) > 2 else k.get("value", 0.0)}


def _same(a: tuple, k: dict) -> tuple[tuple, dict]:
    return a, k


def _interpolate(mode: str, aligned: bool, antialias: bool = False) -> Callable[[tuple, dict], tuple[tuple, dict]]:
    """``aten.upsample_<mode>.vec(x, output_size, [align_corners,] scale_factors)`` ->
    ``F.interpolate``."""

    def adapt(a: tuple, k: dict) -> tuple[tuple, dict]:
        a = (*a, *[None] * (4 - len(a)))
        x, size = a[0], a[1]
        align, scales = (a[2], a[3]) if aligned else (None, a[2])
        kw: dict[str, Any] = {"size": size, "scale_factor": scales, "mode": mode}
        if aligned:
            kw["align_corners"] = align
        if antialias:
            kw["antialias"] = True
        return (x,), kw

    return adapt


_aten = torch.ops.aten
# ATen op -> (torch-level function, argument adapter). Everything else goes by name (see _translate).
_FUNCTIONS: dict[Any, tuple[Callable[..., Any], Callable[[tuple, dict], tuple[tuple, dict]]]] = {
    _aten.conv1d.default: (F.conv1d, _same), _aten.conv2d.default: (F.conv2d, _same),
    _aten.conv3d.default: (F.conv3d, _same),
    _aten.linear.default: (F.linear, _same),
    _aten.layer_norm.default: (F.layer_norm, _drop_from(5)),
    _aten.rms_norm.default: (F.rms_norm, _same),
    _aten.batch_norm.default: (F.batch_norm, _batch_norm),
    _aten.instance_norm.default: (F.instance_norm, lambda a, k: ((a[0], a[3], a[4], a[1], a[2], a[5], a[6], a[7]), {})),
    _aten.scaled_dot_product_attention.default: (F.scaled_dot_product_attention, _same),
    _aten.embedding.default: (F.embedding, _embedding),
    _aten.gelu.default: (F.gelu, _same),
    _aten.silu.default: (F.silu, _same), _aten.hardswish.default: (F.hardswish, _same),
    _aten.hardsigmoid.default: (F.hardsigmoid, _same), _aten.hardtanh.default: (F.hardtanh, _same),
    _aten.relu6.default: (F.relu6, _same), _aten.elu.default: (F.elu, _same),
    _aten.leaky_relu.default: (F.leaky_relu, _same), _aten.mish.default: (F.mish, _same),
    _aten.softplus.default: (F.softplus, _same),
    _aten.dropout.default: (F.dropout, _same),
    _aten.adaptive_avg_pool1d.default: (F.adaptive_avg_pool1d, _same),
    _aten.adaptive_avg_pool2d.default: (F.adaptive_avg_pool2d, _same),
    _aten.adaptive_avg_pool3d.default: (F.adaptive_avg_pool3d, _same),
    _aten.max_pool2d.default: (F.max_pool2d, _same), _aten.max_pool1d.default: (F.max_pool1d, _same),
    _aten.max_pool3d.default: (F.max_pool3d, _same),
    _aten.avg_pool2d.default: (F.avg_pool2d, _same), _aten.avg_pool1d.default: (F.avg_pool1d, _same),
    _aten.avg_pool3d.default: (F.avg_pool3d, _same),
    _aten.constant_pad_nd.default: (F.pad, _pad),
    _aten.pixel_shuffle.default: (F.pixel_shuffle, _same), _aten.pixel_unshuffle.default: (F.pixel_unshuffle, _same),
    _aten.channel_shuffle.default: (F.channel_shuffle, _same),
    _aten.where.self: (torch.where, _same),
    _aten.einsum.default: (torch.einsum, lambda a, k: ((a[0], *a[1]), {})),
    _aten.addmm.default: (torch.addmm, _same), _aten.baddbmm.default: (torch.baddbmm, _same),
    _aten.addbmm.default: (torch.addbmm, _same),
    _aten.pad.default: (F.pad, lambda a, k: ((a[0], list(a[1])), {"mode": a[2] if len(a) > 2 else "constant",
                                                                  "value": a[3] if len(a) > 3 else None})),
    _aten.linalg_vector_norm.default: (torch.norm, lambda a, k: (
        (a[0],), {"p": a[1] if len(a) > 1 else 2, "dim": a[2] if len(a) > 2 else None,
                  "keepdim": a[3] if len(a) > 3 else False, **({"dtype": k["dtype"]} if k.get("dtype") else {})})),
    _aten.select.int: (torch.select, _same),
    **{getattr(_aten, f"upsample_nearest{d}d").vec: (F.interpolate, _interpolate("nearest", False)) for d in (1, 2, 3)},
    **{getattr(_aten, f"_upsample_nearest_exact{d}d").vec: (F.interpolate, _interpolate("nearest-exact", False))
       for d in (1, 2, 3)},
    **{getattr(_aten, f"upsample_{m}").vec: (F.interpolate, _interpolate(m[:-2], True))
       for m in ("linear1d", "bilinear2d", "trilinear3d", "bicubic2d")},
    _aten._upsample_bilinear2d_aa.vec: (F.interpolate, _interpolate("bilinear", True, True)),
    _aten._upsample_bicubic2d_aa.vec: (F.interpolate, _interpolate("bicubic", True, True)),
}
# checks export inserts that hold for the pruned graph too (dtype / device of a tensor): not translated
_DROPPED = {_aten._assert_tensor_metadata.default}
# Tensor attributes: aten.mT.default(x) -> x.mT
_ATTRIBUTES = {_aten.mT.default: "mT", _aten.mH.default: "mH", _aten.numpy_T.default: "T", _aten.adjoint.default: "mH"}
# Tensor methods whose Python argument order differs from the ATen schema's: never mapped by name
_NOT_BY_NAME = {"where", "addmm", "addbmm", "baddbmm", "addmv", "addr"}


class _Translation:
    """The state of one translation: the new graph and where each export node went."""

    def __init__(self, ep: Any, registry: Any) -> None:
        self.ep = ep
        self.registry = registry
        self.graph = fx.Graph()
        self.env: dict[str, Any] = {}
        self.attrs: dict[str, Any] = {}  # get_attr target -> value, for the GraphModule root
        self.lazy: dict[str, str] = {}  # placeholder name -> attribute target (get_attr made at first use)
        self.unmapped: dict[str, int] = {}

    # values -------------------------------------------------------------------------------
    def value(self, name: str) -> Any:
        if name not in self.env and name in self.lazy:
            self.env[name] = self.graph.get_attr(self.lazy[name])
        return self.env[name]

    def arg(self, a: Any) -> Any:
        if isinstance(a, fx.Node):
            return self.value(a.name)
        if isinstance(a, _Ref):
            return self.value(a.name)
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        if isinstance(a, dict):
            return {k: self.arg(v) for k, v in a.items()}
        return a

    # ops ----------------------------------------------------------------------------------
    def op(self, node: fx.Node) -> fx.Node:
        target = node.target
        args, kwargs = self.arg(tuple(node.args)), self.arg(dict(node.kwargs))
        if not isinstance(target, torch._ops.OpOverload):
            return self.graph.call_function(target, args, kwargs)
        full = target._schema.name.split("::")[-1]
        if target in _FUNCTIONS:
            fn, adapt = _FUNCTIONS[target]
            a, k = adapt(args, kwargs)
            return self.graph.call_function(fn, a, k)
        if full == "slice" and target is _aten.slice.Tensor:
            return self._slice(node, args)
        if target is _aten.alias.default and isinstance(args[0], fx.Node):
            return args[0]  # the same tensor
        if target in _ATTRIBUTES and len(args) == 1:
            return self.graph.call_function(getattr, (args[0], _ATTRIBUTES[target]))
        if target is _aten.index.Tensor and len(args) == 2 and isinstance(args[0], fx.Node):
            index = tuple(slice(None) if i is None else self._literal(i) for i in args[1])
            return self.graph.call_function(operator.getitem, (args[0], index if len(index) > 1 else index[0]))
        if target is _aten.lift_fresh_copy.default and isinstance(args[0], fx.Node):
            return self.graph.call_method("clone", args)  # a constant tensor made in forward (torch.tensor(...))
        if full in ("to", "_to_copy") and isinstance(args[0], fx.Node) and \
                kwargs.get("layout", torch.strided) == torch.strided and not kwargs.get("pin_memory"):
            keep = {k: v for k, v in kwargs.items() if k in ("dtype", "device", "non_blocking", "copy", "memory_format")}
            if "to" in getattr(self.registry, "methods", {}):
                return self.graph.call_method("to", args, keep)
        if full in ("add", "sub") and len(args) == 2 and not kwargs and isinstance(args[0], fx.Node):
            return self.graph.call_function(operator.add if full == "add" else operator.sub, args)
        methods = getattr(self.registry, "methods", {})
        functions = getattr(self.registry, "functions", {})
        if full in methods and full not in _NOT_BY_NAME and hasattr(torch.Tensor, full) and args \
                and isinstance(args[0], fx.Node):
            return self.graph.call_method(full, args, kwargs)
        fn = getattr(torch, full, None)
        if fn is not None and fn in functions and full not in _NOT_BY_NAME:
            return self.graph.call_function(fn, args, kwargs)
        self.unmapped[str(target)] = self.unmapped.get(str(target), 0) + 1
        return self.graph.call_function(target, args, kwargs)

    def _literal(self, index: Any) -> Any:
        """An index tensor written as a Python list in ``forward`` (``x[:, [0, 2]]``) is a lifted
        constant behind ``lift_fresh_copy``: it becomes the list again, so rules can read it."""
        if isinstance(index, fx.Node) and index.op == "call_method" and index.target == "clone" \
                and index.args[0].op == "get_attr":
            value = self.attrs.get(index.args[0].target)
            if isinstance(value, torch.Tensor) and value.dim() == 1 and value.dtype in (torch.int64, torch.int32) \
                    and value.numel() <= 4096:
                return value.tolist()
        return index

    def _slice(self, node: fx.Node, args: tuple) -> fx.Node:
        x, dim = args[0], args[1] if len(args) > 1 else 0
        start = args[2] if len(args) > 2 else None
        end = args[3] if len(args) > 3 else None
        step = args[4] if len(args) > 4 else 1
        val = node.args[0].meta["val"]
        dim %= val.dim()
        start = None if start in (0, None) else start
        end = None if end is None or (isinstance(end, int) and end >= min(_INT64_MAX, val.shape[dim])) else end
        step = None if step == 1 else step
        return self.graph.call_function(operator.getitem, (x, (slice(None),) * dim + (slice(start, end, step),)))


def _input_nodes(t: _Translation, model: nn.Module, inputs: tuple[Any, ...], fixed: dict[str, Any],
                 user_inputs: Sequence[str]) -> list[str]:
    """Placeholders named after ``forward``'s parameters (arguments fixed at capture keep their
    value as the default); the nested leaves of list / tuple / dict inputs are read with getitem,
    and each is checked against what the capture was specialised to. Returns those
    specialisations, readable."""
    try:
        names = [p.name for p in inspect.signature(model.forward).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    names = (names + [f"input_{i}" for i in range(len(names), len(inputs))])[:len(inputs)]
    tops: dict[tuple[int, Any], Any] = {(0, i): t.graph.placeholder(n) for i, n in enumerate(names)}
    for k, v in fixed.items():
        tops[(1, k)] = t.graph.placeholder(k, default_value=v)
    leaves = pytree.tree_flatten_with_path((inputs, fixed))[0]
    guards: list[str] = []
    if len(user_inputs) != len(leaves):
        raise TraceError(f"torch.export flattened the inputs into {len(user_inputs)} values, fxprune into "
                         f"{len(leaves)}; pass plain tensors, lists, tuples or dicts of tensors as example_inputs")
    for (path, leaf), uname in zip(leaves, user_inputs):
        top = (0, path[1].idx) if path[0].idx == 0 else (1, path[1].key)
        node: Any = tops[top]
        label = names[top[1]] if top[0] == 0 else top[1]
        for key in path[2:]:
            k = key.idx if hasattr(key, "idx") else key.key
            node = t.graph.call_function(operator.getitem, (node, k))
            label += f"[{k!r}]"
        t.env[uname] = node
        if isinstance(leaf, torch.Tensor):
            guard = t.graph.call_function(expect_shape, (node, tuple(leaf.shape), label))
            guard.meta["is_wrapped"] = True  # the generated code re-wraps it: fx can trace the pruned model again
            guards.append(f"{label}: shape {tuple(leaf.shape)}")
        elif isinstance(leaf, _SIMPLE):
            guard = t.graph.call_function(expect_value, (node, leaf, label))
            guard.meta["is_wrapped"] = True
            guards.append(f"{label} = {leaf!r}")
    return guards


def _output(t: _Translation, values: list[Any], spec: Any) -> Any:
    """The output structure: plain containers stay containers; other pytree nodes (namedtuples,
    HuggingFace ModelOutput dataclasses) are rebuilt by calling their class."""
    tree = pytree.tree_unflatten(values, spec)

    def build(obj: Any) -> Any:
        if isinstance(obj, fx.Node) or isinstance(obj, _SIMPLE):
            return obj
        if type(obj) in (tuple, list):
            return type(obj)(build(x) for x in obj)
        if type(obj) is dict:
            return {k: build(v) for k, v in obj.items()}
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return t.graph.call_function(type(obj), tuple(build(x) for x in obj))
        if isinstance(obj, dict):  # an OrderedDict-based output dataclass
            return t.graph.call_function(type(obj), (), {k: build(v) for k, v in obj.items()})
        raise TraceError(f"torch.export returned an output of type {type(obj).__name__}, which fxprune cannot "
                         "rebuild; return tensors, tuples, lists, dicts or namedtuples")

    return build(tree)


@dataclass
class ExportCapture:
    gm: fx.GraphModule
    specialised: list[str] = field(default_factory=list)
    unmapped: dict[str, int] = field(default_factory=dict)
    collapsed: int = 0
    inlined: list[str] = field(default_factory=list)


def _translate(ep: Any, model: nn.Module, inputs: tuple[Any, ...], fixed: dict[str, Any], calls: list[_LeafCall],
               leaves: dict[str, nn.Module], registry: Any) -> ExportCapture:
    sig = ep.graph_signature
    t = _Translation(ep, registry)
    user_inputs: list[str] = []
    for spec in sig.input_specs:
        kind = spec.kind.name
        if kind == "USER_INPUT":
            user_inputs.append(spec.arg.name)
        elif kind in ("PARAMETER", "BUFFER"):
            t.lazy[spec.arg.name] = spec.target
            t.attrs[spec.target] = lookup_attr(model, spec.target)
        elif kind == "CONSTANT_TENSOR":
            value = ep.constants[spec.target]
            try:
                original = lookup_attr(model, spec.target)
            except AttributeError:
                original = None
            target = spec.target if original is value or isinstance(original, torch.Tensor) else \
                "_export_" + spec.target.replace(".", "_")
            t.lazy[spec.arg.name] = target
            t.attrs[target] = original if isinstance(original, torch.Tensor) else value
        else:
            raise TraceError(f"torch.export captured an input of kind {kind} (`{spec.arg}`), which fxprune does not "
                             "support; capture with capture='fx' or make it a plain tensor")
    guards = _input_nodes(t, model, inputs, fixed, user_inputs)

    nodes = {n.name: n for n in ep.graph.nodes}
    order = {n.name: i for i, n in enumerate(ep.graph.nodes)}
    region_of: dict[str, int] = {}  # node name -> index of the leaf call it belongs to
    end_of: dict[int, str] = {}
    inlined: list[str] = []
    for ci, call in enumerate(calls):
        outs = _refs(call.out)
        region = _region(call, outs, nodes, order, region_of, sig) if call.ok and outs else None
        if region is None:
            if outs and any(nodes.get(o) is not None and _in_stack(nodes[o], call.fqn) for o in outs):
                inlined.append(call.fqn)
            continue
        for name in region:
            region_of[name] = ci
        end_of[ci] = max(outs, key=order.__getitem__)

    collapsed = 0
    out_node = None
    for node in ep.graph.nodes:
        if node.op == "placeholder" or node.target in _DROPPED:
            continue
        if node.op == "output":
            out_node = node
            continue
        if node.op == "get_attr":  # a constant made in forward, on a recorded run (see capture.run)
            target = "_export_" + str(node.target).replace(".", "_")
            t.attrs[target] = getattr(ep.graph_module, node.target)
            t.env[node.name] = t.graph.get_attr(target)
            continue
        ci = region_of.get(node.name)
        if ci is not None:
            if end_of.get(ci) != node.name:
                continue
            call = calls[ci]
            result = t.graph.call_module(call.fqn, t.arg(call.args), t.arg(call.kwargs))
            t.attrs[call.fqn] = leaves[call.fqn]
            collapsed += 1
            _bind_outputs(t, call.out, result)
            continue
        new = t.op(node)
        if "stack_trace" in node.meta and "stack_trace" not in new.meta:
            new.meta["stack_trace"] = node.meta["stack_trace"]
        t.env[node.name] = new
    assert out_node is not None
    flat = list(out_node.args[0])
    mutated = {**sig.buffers_to_mutate, **getattr(sig, "user_inputs_to_mutate", {})}
    n_mut = len(mutated)
    for name, target in mutated.items():
        # a buffer written outside a leaf (a traced-through norm's running statistics): copy_ into it
        if name in sig.buffers_to_mutate:
            src = t.arg(flat[list(mutated).index(name)])
            t.graph.call_method("copy_", (t.graph.get_attr(target), src))
            t.attrs.setdefault(target, lookup_attr(model, target))
        else:
            raise TraceError(f"{type(model).__name__}.forward writes to its input `{target}` in place; fxprune "
                             "cannot capture that with torch.export")
    user_out = [t.arg(v) if isinstance(v, fx.Node) else v for v in flat[n_mut:]]
    t.graph.output(_output(t, user_out, ep.call_spec.out_spec))
    fx.GraphModule(t.attrs, t.graph, type(model).__name__).graph.eliminate_dead_code(_impure)
    used = {n.target for n in t.graph.nodes if n.op in ("call_module", "get_attr")}
    gm = fx.GraphModule({k: v for k, v in t.attrs.items() if k in used}, t.graph, type(model).__name__)
    return ExportCapture(gm, guards, dict(t.unmapped), collapsed, sorted(set(inlined)))


def _impure(node: fx.Node) -> bool:
    """What dead-code elimination must keep: fx's impure nodes, and in-place methods (``fill_``
    on a slice of a tensor that is used later: fx counts every method as pure)."""
    if node.is_impure():
        return True
    return node.op == "call_method" and isinstance(node.target, str) and node.target.endswith("_") \
        and not node.target.startswith("__")


def _in_stack(node: fx.Node, fqn: str) -> bool:
    return any(path == fqn for path, _ in (node.meta.get("nn_module_stack") or {}).values())


def _region(call: _LeafCall, outs: list[str], nodes: dict[str, fx.Node], order: dict[str, int],
            taken: dict[str, int], sig: Any) -> set[str] | None:
    """The export nodes computing one leaf call: the contiguous run of nodes inside the module
    that ends at its last output. None when the call cannot be collapsed (its nodes are used
    outside it other than through its outputs, or it reads values it was not given)."""
    if any(o not in nodes or not _in_stack(nodes[o], call.fqn) for o in outs):
        return None
    graph_nodes = list(nodes.values())
    end = max(order[o] for o in outs)
    region: set[str] = set()
    i = end
    while i >= 0 and graph_nodes[i].op == "call_function" and _in_stack(graph_nodes[i], call.fqn) \
            and graph_nodes[i].name not in taken:
        region.add(graph_nodes[i].name)
        i -= 1
    given = set(_refs(call.args)) | set(_refs(call.kwargs))
    own = set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers) | set(sig.inputs_to_lifted_tensor_constants)
    outs_set = set(outs)
    for name in region:
        n = nodes[name]
        for a in n.all_input_nodes:
            if a.name not in region and a.name not in given and a.name not in own:
                return None
        if name not in outs_set and any(u.name not in region for u in n.users):
            return None
    if not outs_set <= region:
        return None
    return region


def _bind_outputs(t: _Translation, out: Any, result: fx.Node) -> None:
    if isinstance(out, _Ref):
        t.env[out.name] = result
        return
    if isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            if o is None or isinstance(o, _SIMPLE) and not isinstance(o, _Ref):
                continue
            item = t.graph.call_function(operator.getitem, (result, i))
            _bind_outputs(t, o, item)
        return
    if isinstance(out, dict):
        for k, o in out.items():
            _bind_outputs(t, o, t.graph.call_function(operator.getitem, (result, k)))


def capture_export(model: nn.Module, inputs: tuple[Any, ...], fixed: dict[str, Any] | None = None, *,
                   is_leaf: Callable[[nn.Module, str], bool], registry: Any) -> ExportCapture:
    """Capture ``model`` (in its current training mode) with non-strict ``torch.export`` at the
    shapes of ``inputs`` and translate the graph back to torch level (see the module docstring)."""
    recorder = _Recorder(model, is_leaf)
    # on failure torch.export prints the partial graph to stderr (hundreds of kB for a detector):
    # what it writes is kept back and passed on only when the export succeeds
    held = io.StringIO()
    try:
        with recorder.active(), keep_rng(inputs), contextlib.redirect_stderr(held):
            ep = torch.export.export(model, tuple(inputs), dict(fixed or {}), strict=False)
        sys.stderr.write(held.getvalue())
    except FxPruneError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TraceError(f"torch.export cannot capture {type(model).__name__}: {type(exc).__name__}: {first}") from exc
    calls = _rename(recorder, ep)
    capture = _translate(ep, model, inputs, dict(fixed or {}), calls, recorder.leaves, registry)
    _check_capture(model, capture.gm, inputs, dict(fixed or {}))
    return capture


def _check_capture(model: nn.Module, gm: fx.GraphModule, inputs: tuple[Any, ...], fixed: dict[str, Any]) -> None:
    """The translated graph computes what the model computes on the example inputs."""
    if model.training:
        return  # random ops and running statistics: the train graph is checked by verification
    if any(t.device.type == "meta" for t in pytree.tree_leaves(inputs) if isinstance(t, torch.Tensor)):
        return  # planning without data: a forward on meta tensors may need values (HF's masks call .item())
    with torch.no_grad(), keep_rng(inputs):
        ref = model(*clone_inputs(inputs), **fixed)
    with torch.no_grad(), keep_rng(inputs):
        got = gm(*clone_inputs(inputs))
    ref_leaves, got_leaves = pytree.tree_leaves(ref), pytree.tree_leaves(got)
    if len(ref_leaves) != len(got_leaves):
        raise TraceError(f"the graph torch.export captured of {type(model).__name__} returns {len(got_leaves)} "
                         f"values, the model {len(ref_leaves)}")
    for i, (r, g) in enumerate(zip(ref_leaves, got_leaves)):
        if isinstance(r, torch.Tensor):
            if not isinstance(g, torch.Tensor) or r.shape != g.shape:
                raise TraceError(f"output {i} of the graph torch.export captured of {type(model).__name__} has "
                                 f"another shape than the model's")
            if r.is_floating_point():
                scale = float(r.abs().max()) if r.numel() else 0.0
                err = float((r.double() - g.double()).abs().max()) if r.numel() else 0.0
                if not math.isfinite(err) or err > 1e-4 * max(scale, 1.0):
                    raise TraceError(f"output {i} of the graph torch.export captured of {type(model).__name__} "
                                     f"differs from the model's by {err:.3g}: the capture is wrong (please report)")
            elif not torch.equal(r, g):
                raise TraceError(f"output {i} of the graph torch.export captured of {type(model).__name__} "
                                 "differs from the model's")


def export_trace(model: nn.Module, inputs: tuple[Any, ...], fixed: dict[str, Any] | None = None, *,
                 leaf_modules: Sequence[type | str] = (), registry: Any = None) -> tuple[Any, ExportCapture]:
    """``trace``'s counterpart on the torch.export path: a ``TracedModel`` (eval graph, and a
    train graph when it differs) plus what the capture specialised."""
    _check_reserved_names(model)
    tracer = FxTracer(registry, [x for x in leaf_modules if isinstance(x, type)],
                      [x for x in leaf_modules if isinstance(x, str)])
    with training_mode(model, False):
        cap = capture_export(model, inputs, fixed, is_leaf=tracer.is_leaf_module, registry=registry)
    train_gm = None
    inner = _Recorder(model, tracer.is_leaf_module).leaves
    traced_through = {type(m) for n, m in model.named_modules()
                      if not any(n == q or n.startswith(q + ".") for q in inner)}
    if _reads_training(traced_through):
        with training_mode(model, True):
            train = capture_export(model, inputs, fixed, is_leaf=tracer.is_leaf_module, registry=registry)
        if train.gm.code != cap.gm.code:
            train_gm = train.gm
    return TracedModel(model, cap.gm, train_gm, {}), cap
