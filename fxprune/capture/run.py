"""The third capture path: the ops of one real run, for forwards that depend on data.

A detector's ``forward`` picks boxes by score: ``topk``, ``nms`` and per-image loops whose trip
counts depend on the values. Symbolic tracing cannot run that Python, and ``torch.export`` stops
at the first size that depends on a value (``GuardOnDataDependentSymNode``). Running the model
once on the example inputs under ``make_fx(tracing_mode="real")`` records every ATen op with
real tensors, so every value-dependent decision is simply taken. The recorded graph is
translated exactly like an exported one (leaf calls collapsed into ``call_module`` nodes with
their original names, ATen ops mapped back to torch level: one rule per op still).

That graph is only valid for the example inputs: another image would take other decisions. It
is therefore used for *analysis* (channel graph, plan, rewrite of the layers), and the pruned
model is the user's own model with smaller layers, keeping its Python ``forward`` (see
``fxprune.passes.surgery``). Groups whose channel count appears in that forward's own code (a
``view`` with a literal width between two layers) are kept whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import fx, nn
from torch.fx.immutable_collections import immutable_dict, immutable_list

from ..errors import FxPruneError, TraceError
from .copying import keep_rng
from .export import ExportCapture, _check_capture, _Recorder, _translate
from .trace import FxTracer, TracedModel, _check_reserved_names, training_mode

__all__ = ["capture_run", "run_trace"]


class _RegionRecorder(_Recorder):
    """A ``_Recorder`` that also marks, on the trace-time nodes, which leaf call made them (what
    ``torch.export`` writes as ``nn_module_stack``; ``make_fx`` does not)."""

    def __init__(self, model: nn.Module, is_leaf: Callable[[nn.Module, str], bool]) -> None:
        super().__init__(model, is_leaf)
        self._starts: dict[int, list[fx.Node | None]] = {}

    @staticmethod
    def _last_node() -> fx.Node | None:
        from torch.fx.experimental import proxy_tensor

        mode = proxy_tensor.get_proxy_mode()
        if mode is None:
            return None
        nodes = mode.tracer.graph.nodes
        return next(iter(reversed(nodes)), None)

    def _pre_hook(self, mod: nn.Module, args: Any, kwargs: Any) -> None:
        super()._pre_hook(mod, args, kwargs)
        self._starts.setdefault(id(mod), []).append(self._last_node())

    def _hook(self, mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        starts = self._starts.get(id(mod))
        start = starts.pop() if starts else None
        end = self._last_node()
        fqn = self._fqn[id(mod)]
        if start is not None and end is not None and start is not end:
            node = start.next
            while True:
                node.meta["nn_module_stack"] = {"L__" + fqn: (fqn, type(mod))}
                if node is end:
                    break
                node = node.next
        super()._hook(mod, args, kwargs, out)


@dataclass
class _Spec:
    kind: Any
    arg: Any
    target: str | None


@dataclass
class _Signature:
    """The part of ``torch.export``'s graph signature ``_translate`` reads."""

    input_specs: list[_Spec]
    inputs_to_parameters: dict[str, str] = field(default_factory=dict)
    inputs_to_buffers: dict[str, str] = field(default_factory=dict)
    inputs_to_lifted_tensor_constants: dict[str, str] = field(default_factory=dict)
    buffers_to_mutate: dict[str, str] = field(default_factory=dict)
    user_inputs_to_mutate: dict[str, str] = field(default_factory=dict)


@dataclass
class _Kind:
    name: str


@dataclass
class _Arg:
    name: str


@dataclass
class _CallSpec:
    out_spec: Any


@dataclass
class _Program:
    """A recorded run dressed as the ``ExportedProgram`` fields ``_translate`` reads."""

    graph: fx.Graph
    graph_module: fx.GraphModule
    graph_signature: _Signature
    call_spec: _CallSpec
    constants: dict[str, Any] = field(default_factory=dict)


def _plain(obj: Any) -> Any:
    """fx stores node arguments as immutable lists / dicts: the output structure as plain ones."""
    if type(obj) in (immutable_dict, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if type(obj) in (immutable_list, list, tuple):
        return (tuple if type(obj) is tuple else list)(_plain(v) for v in obj)
    return obj


def _program(gm: fx.GraphModule, params: dict[str, Any], buffers: dict[str, Any]) -> _Program:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    names = list(params) + list(buffers)
    specs: list[_Spec] = []
    sig = _Signature(specs)
    for i, ph in enumerate(placeholders):
        if i < len(params):
            specs.append(_Spec(_Kind("PARAMETER"), _Arg(ph.name), names[i]))
            sig.inputs_to_parameters[ph.name] = names[i]
        elif i < len(names):
            specs.append(_Spec(_Kind("BUFFER"), _Arg(ph.name), names[i]))
            sig.inputs_to_buffers[ph.name] = names[i]
        else:
            specs.append(_Spec(_Kind("USER_INPUT"), _Arg(ph.name), None))
    out = next(n for n in gm.graph.nodes if n.op == "output")
    flat, spec = pytree.tree_flatten(_plain(out.args[0]))
    out.args = (tuple(flat),)
    return _Program(gm.graph, gm, sig, _CallSpec(spec))


def capture_run(model: nn.Module, inputs: tuple[Any, ...], fixed: dict[str, Any] | None = None, *,
                is_leaf: Callable[[nn.Module, str], bool], registry: Any) -> ExportCapture:
    """Record ``model`` (eval mode) running on ``inputs`` with ``make_fx`` on real tensors and
    translate the graph to torch level (see the module docstring)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    fixed = dict(fixed or {})
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def run(p: dict[str, Any], b: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return torch.func.functional_call(model, (p, b), args, kwargs)

    recorder = _RegionRecorder(model, is_leaf)
    try:
        with recorder.active(), keep_rng(inputs), torch.no_grad():
            gm = make_fx(run, tracing_mode="real", pre_dispatch=True,
                         _error_on_data_dependent_ops=False)(params, buffers, tuple(inputs), fixed)
    except FxPruneError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TraceError(f"recording one run of {type(model).__name__} failed: {type(exc).__name__}: {first}") from exc
    program = _program(gm, params, buffers)
    capture = _translate(program, model, inputs, fixed, recorder.calls, recorder.leaves, registry)
    _check_capture(model, capture.gm, inputs, fixed)
    return capture


def run_trace(model: nn.Module, inputs: tuple[Any, ...], fixed: dict[str, Any] | None = None, *,
              leaf_modules: Sequence[type | str] = (), registry: Any = None) -> tuple[TracedModel, ExportCapture]:
    """``trace``'s counterpart for the run path: the eval-mode graph of one run (no train graph:
    the pruned model is the user's module, whose own forward handles ``self.training``)."""
    _check_reserved_names(model)
    tracer = FxTracer(registry, [x for x in leaf_modules if isinstance(x, type)],
                      [x for x in leaf_modules if isinstance(x, str)])
    with training_mode(model, False):
        cap = capture_run(model, inputs, fixed, is_leaf=tracer.is_leaf_module, registry=registry)
    return TracedModel(model, cap.gm, None, {}), cap

