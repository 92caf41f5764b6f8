"""``fxprune.compile``: trace -> analyse -> score/resolve -> rewrite -> verify, timed per stage."""

from __future__ import annotations

import gc
import logging
import time
import types
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import fx, nn

from . import progress
from .criteria import CRITERIA
from .errors import CheckpointError, ModelError, PlanError, ResolutionError, TraceError
from .graph.channel_graph import ChannelGraph
from .graph.analysis import build_channel_graph
from .graph.cost import count_macs, count_params
from .graph.factors import FACTORS, iter_factors, kept_indices
from .graph.rules import REGISTRY, OpRegistry
from .capture.signature import check_arity, unsupplied_defaults, without_cache
from .capture.export import export_trace
from .capture.run import run_trace
from .capture.trace import TracedModel, propagate_shapes, trace
from .module import PrunedGraphModule
from .passes.mask import insert_masks
from .passes.native_norms import kept_statistics_reference, to_native_layer_norm
from .passes.rewrite import pruned_shape, rewrite_pass
from .passes.surgery import pin_unrealisable, realise, replaced, uncalled_parameters, verify_calls
from .passes.verify import output_factors, verify as verify_pass
from .plan import ATTENTION, Plan, Resolution
from .planner import resolve as resolve_plan
from .landing import land
from .staged import compile_both
from .shards import ShardedCheckpoint
from .report import LAYERS_KEY, META_ATTR, REPORT_KEY, RESOLUTION_KEY, BarrierReport, GroupReport, Report

__all__ = ["Analysis", "VERIFY_SEED", "analyse", "as_inputs", "check_finite", "check_inputs", "compile",
           "checkpoint_source", "default_tolerance", "kept_ids", "resolve", "second_input", "unwrap"]

log = logging.getLogger(__name__)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        progress.step(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class Analysis:
    """A model traced, shape-propagated and analysed: everything a plan is resolved against."""

    model: nn.Module
    inputs: tuple[Any, ...]
    traced: TracedModel
    cg: ChannelGraph
    timer: _Timer
    notes: list[str] = field(default_factory=list)
    fixed_arguments: dict[str, Any] = field(default_factory=dict)
    capture: str = "fx"
    specialised: list[str] = field(default_factory=list)

    @property
    def module_names(self) -> set[str]:
        return {n for n, _ in self.model.named_modules()}

    @property
    def parameters(self) -> set[str]:
        return {n for n, t in self.cg.tensors.items() if isinstance(t, nn.Parameter)}


def as_inputs(example_inputs: Any) -> tuple[Any, ...]:
    if example_inputs is None:
        raise PlanError("example_inputs are required: fxprune runs the model once to learn every tensor's shape")
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)


def check_inputs(inputs: tuple[Any, ...]) -> None:
    """Example inputs must be real data: non-empty, finite, not on the meta device (verification
    on a NaN or an empty batch would pass whatever the pruned model computes)."""
    for i, x in enumerate(torch.utils._pytree.tree_leaves(inputs)):
        if not isinstance(x, torch.Tensor):
            continue
        if x.device.type == "meta":
            raise PlanError(f"example input {i} is on the meta device; fxprune runs the model on real inputs")
        if x.numel() == 0:
            raise PlanError(f"example input {i} is empty (shape {tuple(x.shape)}); give at least one sample: "
                            "verification on an empty batch proves nothing")
        if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
            raise PlanError(f"example input {i} holds NaN or infinite values; verification on it would pass "
                            "whatever the pruned model computes. Give finite inputs.")


def unwrap(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The module fxprune prunes, and notes for the report: a ``torch.compile`` wrapper
    (OptimizedModule) is replaced by the module it wraps."""
    notes = []
    orig = getattr(model, "_orig_mod", None)
    if isinstance(orig, nn.Module) and type(model).__name__ == "OptimizedModule":
        notes.append("the model was wrapped by torch.compile; fxprune pruned the wrapped module (`_orig_mod`). "
                     "Call torch.compile on the pruned model to compile it again.")
        model = orig
    return model, notes


def on_meta(model: nn.Module) -> bool:
    """Whether ``model`` holds no data: every parameter and buffer on the meta device (built
    under ``with torch.device("meta")``). Such a model can be analysed and planned (shapes, the
    channel graph, the cost model), not compiled. A model with some tensors on meta and some with
    data is refused: say which to materialise."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    meta = [n for n, t in tensors if t.device.type == "meta"]
    if not meta:
        return False
    if len(meta) < len(tensors):
        real = next(n for n, t in tensors if t.device.type != "meta")
        raise ModelError(f"{type(model).__name__} has {len(meta)} tensor(s) on the meta device (e.g. `{meta[0]}`) and "
                         f"{len(tensors) - len(meta)} with data (e.g. `{real}`): build it wholly on meta to plan "
                         "without weights, or materialise it (model.to_empty(device='cpu') and load_state_dict)")
    return True


def check_finite(model: nn.Module) -> None:
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.device.type == "meta":
            raise ModelError(f"`{name}` is on the meta device (no data): fxprune runs the model to verify it. "
                             "Materialise it first (model.to_empty(device='cpu') and load_state_dict).")
        # a sum is cheap and non-finite when any entry is (or on overflow: then look closely)
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.detach().sum())) \
                and not bool(torch.isfinite(t).all()):
            raise ModelError(f"`{name}` holds NaN or infinite values: channel scores and verification would be "
                             "meaningless. Fix or re-initialise those weights before pruning.")


CAPTURES = ("auto", "fx", "export", "run")


def _opaque_calls(traced: TracedModel, registry: OpRegistry) -> list[str]:
    """Calls the fx graph keeps as one opaque Python function (``torch.fx.wrap``: torchvision's
    ``shifted_window_attention``) and no rule knows: torch.export sees through them."""
    out = []
    for n in traced.eval_gm.graph.nodes:
        if n.op == "call_function" and isinstance(n.target, types.FunctionType) and n.users and n.all_input_nodes and \
                registry.lookup(n, lambda t: traced.eval_gm.get_submodule(t)) is None:
            out.append(getattr(n.target, "__qualname__", str(n.target)))
    return out


def _aten_calls(traced: TracedModel) -> int:
    """ATen operator calls in the fx graph: the model is itself a torch.export program
    (``ExportedProgram.module()``, a loaded ``.pt2``), whose ATen ops the export capture's
    translator maps back to the torch-level ops the channel rules know."""
    return sum(n.op == "call_function" and isinstance(n.target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket))
               for n in traced.eval_gm.graph.nodes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def analyse(model: nn.Module, example_inputs: Any, *, leaf_modules: Sequence[type | str] = (),
            concrete_args: dict[str, Any] | None = None, registry: OpRegistry = REGISTRY,
            capture: str = "auto", attention: str = "heads", prune_outputs: bool = False) -> Analysis:
    """Capture ``model`` (eval and train mode), propagate shapes, build its channel graph.
    ``attention``: how attention is pruned, ``"heads"`` or ``"head_dims"``; ``prune_outputs``: the
    outputs may lose channels (see ``Plan``).

    ``capture``: ``"fx"`` (torch.fx symbolic tracing: the graph is valid for any input shape),
    ``"export"`` (non-strict torch.export: reads any Python forward, but the graph is specialised
    to the example inputs' shapes and non-tensor arguments), ``"run"`` (the ops of one real run
    on the example inputs, for forwards whose sizes depend on values: detectors' top-k and NMS;
    the graph is used for analysis only and the pruned model is the user's module with smaller
    layers, keeping its own forward) or ``"auto"`` (fx; torch.export when fx cannot trace the
    forward or had to keep submodules whole; one run when both fail)."""
    if not isinstance(model, nn.Module):
        raise PlanError(f"fxprune prunes torch.nn.Module instances, got {type(model).__name__}")
    if attention not in ATTENTION or attention == "both":
        raise PlanError(f"attention={attention!r}: an analysis holds one structure, 'heads' or 'head_dims' "
                        "(attention='both' is two compiles in turn: give it to compile in a Plan)")
    if capture not in CAPTURES:
        raise PlanError(f"capture={capture!r}: use one of {', '.join(map(repr, CAPTURES))}")
    model, notes = unwrap(model)
    inputs = as_inputs(example_inputs)
    weightless = on_meta(model)
    if weightless:  # plan without weights: shapes from meta tensors, no value read
        inputs = tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)
        notes.append(f"{type(model).__name__} is on the meta device: analysed from shapes alone (no weights); "
                     "its resolution compiles on the materialised model")
    else:
        check_inputs(inputs)
        check_finite(model)
    check_arity(model, inputs)
    fixed = unsupplied_defaults(model, inputs, concrete_args)
    if without_cache(model, fixed):
        notes.append("use_cache fixed to False: a key/value cache is an output whose attention heads would have "
                     "to stay whole; the pruned model returns no cache")
    if fixed:
        notes.append("arguments not in example_inputs fixed to their defaults: "
                     + ", ".join(f"{k}={v!r}" for k, v in fixed.items())
                     + " (the pruned model accepts only these values)")
    concrete_args = {**fixed, **(concrete_args or {})}
    timer = _Timer()
    used, specialised, traced = "fx", [], None
    with timer.stage("trace"):
        fx_error: TraceError | None = None
        if capture in ("fx", "auto"):
            try:
                traced = trace(model, leaf_modules=leaf_modules, registry=registry, concrete_args=concrete_args or None)
            except TraceError as exc:
                if capture == "fx":
                    raise
                fx_error = exc
        export_error: TraceError | None = None
        opaque = _opaque_calls(traced, registry) if traced is not None else []
        aten = _aten_calls(traced) if traced is not None else 0
        if capture == "export" or (capture == "auto" and (fx_error is not None or traced.auto_leaves or opaque or aten)):
            try:
                exported, cap = export_trace(model, inputs, concrete_args, leaf_modules=leaf_modules,
                                             registry=registry)
            except TraceError as exc:
                if capture == "export":
                    raise
                export_error = exc
                if fx_error is None:
                    log.info("torch.export did not capture %s either (%s); keeping the fx trace",
                             type(model).__name__, exc)
            else:
                if fx_error is not None:
                    notes.append(f"torch.fx cannot trace {type(model).__name__}.forward; captured with torch.export")
                elif traced is not None and traced.auto_leaves:
                    notes.append(f"torch.fx kept {len(traced.auto_leaves)} submodule(s) whole; captured with "
                                 "torch.export instead")
                elif traced is not None and aten:
                    notes.append(f"{type(model).__name__} is an ATen-level graph ({aten} ATen op call(s): a torch.export "
                                 "program); captured with torch.export")
                elif traced is not None:
                    notes.append(f"torch.fx kept {len(opaque)} call(s) of wrapped functions whole ("
                                 + ", ".join(sorted(set(opaque))) + "); captured with torch.export instead")
                traced, used, specialised = exported, "export", cap.specialised
                notes.append("captured with torch.export: the pruned model is specialised to "
                             + "; ".join(cap.specialised) + " and refuses other input shapes")
                if cap.unmapped:
                    log.info("ATen ops without a torch-level rule (barriers): %s", cap.unmapped)
        if capture == "run" or (fx_error is not None and export_error is not None):
            try:
                recorded, cap = run_trace(model, inputs, concrete_args, leaf_modules=leaf_modules, registry=registry)
            except TraceError as exc:
                if capture == "run":
                    raise
                raise TraceError(f"{fx_error} torch.export cannot capture it either: {export_error}. Recording one "
                                 f"run failed too: {exc}") from exc
            if fx_error is not None:
                notes.append(f"torch.fx cannot trace {type(model).__name__}.forward and torch.export stops at a value-"
                             f"dependent size ({_first_line(export_error)}); captured from one run instead")
            traced, used, specialised = recorded, "run", []
            notes = [n.replace("(the pruned model accepts only these values)",
                               "(for the recorded run; the pruned model keeps its own forward and accepts any)")
                     for n in notes]
            notes.append("captured from one run on the example inputs: the pruned model is "
                         f"{type(model).__name__} itself with smaller layers and keeps its own forward (any input "
                         "shape); verified layer call by layer call, in eval mode")
        for gm in traced.graph_modules:
            propagate_shapes(gm, inputs, mode="meta-only" if weightless else "auto")
    with timer.stage("analyse"):
        cg = build_channel_graph(traced.graph_modules, registry, attention, bool(prune_outputs))
        if used == "run":
            unread = uncalled_parameters(model, traced.eval_gm)
            if unread:
                warnings.warn(f"the recorded run of {type(model).__name__} never used {len(unread)} parameter(s) "
                              f"(e.g. `{unread[0]}`): they belong to paths of forward the example inputs did not "
                              "take and are kept as they are; an input taking such a path may fail on the pruned "
                              "model. Give example inputs that take every path.", stacklevel=3)
                notes.append(f"{len(unread)} parameter(s) were not used by the recorded run (e.g. `{unread[0]}`) "
                             "and are kept as they are")
            kept_whole = pin_unrealisable(traced, cg, registry)
            if kept_whole:
                notes.append(f"{len(kept_whole)} place(s) in {type(model).__name__}'s own forward compute with a "
                             "layer width, so the groups reaching them are kept whole (see barriers)")
        log.debug("%d channel groups, %d barriers", len(cg.groups()), len(cg.barriers))
    return Analysis(model, inputs, traced, cg, timer, notes, fixed, used, specialised)


def resolve(model: nn.Module, plan: Plan | None = None, example_inputs: Any = None, *,
            analysis: Analysis | None = None, calibration_data: Any = None, calibration_loss: Any = None,
            weights: str | Path | None = None, **trace_kwargs: Any) -> Resolution:
    """The kept channels ``plan`` picks for ``model``, without building the pruned model.

    ``weights``: for a model on the meta device, a directory of ``*.safetensors`` shards (a
    HuggingFace checkpoint) that weight criteria (l1, l2, fpgm, bn_scale, cpmc) read their
    scores from, one tensor at a time; the model itself stays on meta."""
    plan = plan or Plan()
    if plan.attention == "both":
        raise PlanError("attention='both' picks the head dims on the model its heads stage built, so it has no "
                        "resolution before compiling: call compile, then fxprune.resolution_of(small)")
    a = analysis or analyse(model, example_inputs, attention=plan.attention, prune_outputs=plan.prune_outputs,
                            **trace_kwargs)
    _check_structure(a, plan)
    source = None
    if on_meta(a.model):
        _check_weightless(plan, weights)
        if weights is not None:
            source = checkpoint_source(a.cg, ShardedCheckpoint(weights))
    elif weights is not None:
        raise PlanError("weights= is for a model on the meta device (its scores are read from the shards); this "
                        f"{type(a.model).__name__} has its own weights")
    with a.timer.stage("score"):
        return resolve_plan(plan, a.cg, module_names=a.module_names, parameters=a.parameters,
                            model=a.model, data=calibration_data, gm=a.traced.eval_gm, loss_fn=calibration_loss,
                            weights=source)


def _check_weightless(plan: Plan, weights: Any) -> None:
    """A plan a model without data can be resolved on: scores that read no tensor (or read them
    from ``weights``), no activations, and no measured latency (the pruned model would have to run)."""
    if CRITERIA[plan.criterion].needs_data:
        raise PlanError(f"criterion={plan.criterion!r} reads activations, and a model on the meta device cannot run: "
                        "materialise the model, or use a weight criterion with weights=<shards directory>")
    if plan.criterion != "random" and weights is None:
        raise PlanError(f"criterion={plan.criterion!r} reads the weights, and the model is on the meta device: pass "
                        "weights=<directory of safetensors shards> to read them from the checkpoint, use "
                        "criterion='random' to plan from shapes alone, or materialise the model first")
    if plan.backend is not None:
        raise PlanError(f"backend={plan.backend!r} times the pruned model, and a model on the meta device cannot "
                        "run: plan without a backend (a FLOPs or parameter budget), or materialise the model first")


def checkpoint_source(cg: ChannelGraph, ckpt: ShardedCheckpoint) -> Callable[[str], torch.Tensor]:
    """``name -> tensor`` reading the graph's tensor ``name`` from ``ckpt`` (under its own name or
    a tied one), checked against the model's shape."""
    tied: dict[str, list[str]] = {}
    for alias, canon in cg.aliases.items():
        tied.setdefault(canon, []).append(alias)

    def get(name: str) -> torch.Tensor:
        want = tuple(cg.tensors[name].shape)
        for key in [name, *tied.get(name, [])]:
            if key in ckpt:
                if ckpt.shapes[key] != want:
                    raise CheckpointError(f"{ckpt.where[key].name}: tensor {key!r} has shape {list(ckpt.shapes[key])} "
                                          f"but the model's is {list(want)}: the checkpoint is not this model's")
                return ckpt.get(key)
        raise CheckpointError(f"{ckpt.directory} has no tensor {name!r}" + (
            f" (nor its tied names {tied[name]})" if name in tied else "") + ": the checkpoint is not this model's")

    return get


def _check_structure(a: Analysis, plan: Plan) -> None:
    """The structural options of ``plan`` are the ones the analysis was built with."""
    for name in ("attention", "prune_outputs"):
        have, want = getattr(a.cg, name), getattr(plan, name)
        if have != want:
            raise PlanError(f"the analysis was built with {name}={have!r} but the plan asks for {name}={want!r}: "
                            f"call analyse(model, ..., {name}={want!r})")


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Compiling allocates many small objects; Python's cyclic collector would rescan the whole
    heap (the model included) many times meanwhile. Reference counting still frees memory."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_no_cyclic_gc()
def compile(model: nn.Module, plan: Plan | None = None, example_inputs: Any = None, *,
            resolution: Resolution | None = None, verify: bool = True, atol: float | None = None,
            rtol: float | None = None,
            leaf_modules: Sequence[type | str] = (), concrete_args: dict[str, Any] | None = None,
            calibration_data: Any = None, calibration_loss: Any = None,
            registry: OpRegistry = REGISTRY, analysis: Analysis | None = None,
            capture: str = "auto") -> nn.Module:
    """Prune ``model`` according to ``plan`` (or a saved ``resolution``) into a new, physically
    smaller module: a ``PrunedGraphModule``, or on the ``"run"`` capture a copy of the user's
    module with smaller layers (see ``analyse``). The caller's model is never modified.

    With ``verify`` (the default) the result is checked against the dense model with the pruned
    channels zeroed on the example inputs; beyond ``atol + rtol * max|ref|`` a
    ``VerificationError`` names the first diverging node. Default tolerances follow the dtype of
    the example inputs (fp32: 1e-5 + 1e-4 * max|ref|; fp16 / bf16 / fp64 accordingly).

    Criteria that read activations (``taylor``, ``zero_channel``, ``attention``) take
    ``calibration_data``: an iterable of batches, each an input tensor or ``(inputs, targets)``;
    ``calibration_loss(output, targets)`` overrides taylor's default loss (cross-entropy for
    integer targets, MSE for float targets). ``analysis``: the result of ``analyse(model, ...)``
    when the caller already has it (not traced again; its example inputs are the ones verified)."""
    if plan is not None and not isinstance(plan, Plan):
        raise PlanError(f"plan must be a fxprune.Plan, got {type(plan).__name__}")
    if isinstance(model, nn.Module) and on_meta(unwrap(model)[0]):
        raise ModelError(f"{type(model).__name__} is on the meta device (no weights to slice or verify). Plan on it "
                         "with fxprune.resolve(model, plan, example_inputs), then compile the materialised model "
                         "with resolution=")
    if analysis is not None and analysis.model is not unwrap(model)[0]:
        raise PlanError("compile(analysis=...) was made for another model; call analyse(model, ...) on this one")
    structure = plan or (resolution.plan if resolution is not None else None) or Plan()
    if structure.attention == "both":
        if analysis is not None:
            raise PlanError("attention='both' analyses the model once per stage; call compile without analysis=")
        return compile_both(compile, analyse, model, plan, example_inputs, resolution,
                            {"verify": verify, "atol": atol, "rtol": rtol, "calibration_data": calibration_data,
                             "calibration_loss": calibration_loss},
                            {"leaf_modules": leaf_modules, "concrete_args": concrete_args, "registry": registry,
                             "capture": capture})
    a = analysis or analyse(model, example_inputs, leaf_modules=leaf_modules, concrete_args=concrete_args,
                            registry=registry, capture=capture, attention=structure.attention,
                            prune_outputs=structure.prune_outputs)
    native = structure.layer_norm == "native"
    if native and a.capture == "run":
        raise PlanError("layer_norm='native' rewrites the forward code, which the run capture keeps as the "
                        "model's own; use layer_norm='exact' (or capture='fx' / 'export')")
    landing = None
    if resolution is None:
        def resolve_one(p: Plan) -> Resolution:
            return resolve(model, p, analysis=a, calibration_data=calibration_data, calibration_loss=calibration_loss)

        t0, score0 = time.perf_counter(), a.timer.seconds.get("score", 0.0)
        resolution, landing = land(plan or Plan(), resolve_one,
                                   lambda r: _rewrite(a, r, registry, native, model.training)[0].eval(),
                                   a.traced.eval_gm, a.inputs)
        if landing is not None:  # the rounds of building and timing on the backend, less their planning ("score")
            a.timer.seconds["backend"] = a.timer.seconds.get("backend", 0.0) + time.perf_counter() - t0 - (
                a.timer.seconds.get("score", 0.0) - score0)
    elif plan is not None:
        log.info("a resolution was given; the plan is only recorded")
    timer, cg, traced = a.timer, a.cg, a.traced
    with timer.stage("rewrite"):
        small, id_kept, changed, native_count = _rewrite(a, resolution, registry, native, model.training)
        if a.capture == "run":
            if changed:
                raise ResolutionError(
                    f"the resolution prunes channels that {type(a.model).__name__}'s own forward computes with (at "
                    + ", ".join(f"`{n.name}`" for n in changed[:5]) + "); the model keeps its Python forward, so "
                    "those groups cannot be pruned on the run capture")
            replaced_at = replaced(a.model, traced.eval_gm)
            result: nn.Module = realise(a.model, small, *replaced_at)
        else:
            result = small
    err = scale = None
    final_notes: list[str] = []
    if verify:
        d_atol, d_rtol = default_tolerance(a.inputs)  # the second, random input: see second_input
        atol, rtol = d_atol if atol is None else atol, d_rtol if rtol is None else rtol
        with timer.stage("verify"):
            if a.capture == "run":
                err, scale, final_notes = verify_calls(a.model, result, traced, id_kept, a.inputs, atol=atol,
                                                       rtol=rtol, extra_inputs=second_input(a.inputs))
            else:
                err, scale = _verify(small, traced, id_kept, a.inputs, atol, rtol, native_norms=native)
    rep = _report(a.model, small, a, resolution, id_kept, err, scale, plan or resolution.plan,
                  params_model=result)
    rep.notes.extend(final_notes)
    if landing is not None:
        rep.latency = landing
        rep.notes.append(_landing_note(landing))
    if native and native_count:
        rep.notes.append(f"layer_norm='native': {native_count} pruned LayerNorm(s) normalise over their kept channels "
                         "only, so the pruned model computes a different function from the dense one (verified against "
                         "the masked dense model with kept-channel statistics); fine-tune it")
    if cg.prune_outputs:
        rep.notes.extend(_output_widths(traced.eval_gm, id_kept))
    if result is small:
        small.meta[REPORT_KEY] = rep
        small.meta[RESOLUTION_KEY] = resolution
    else:
        modules, tensors = replaced_at
        setattr(result, META_ATTR, {REPORT_KEY: rep, RESOLUTION_KEY: resolution,
                                    LAYERS_KEY: {"modules": modules, "tensors": tensors}})
    return result


def _rewrite(a: Analysis, resolution: Resolution, registry: OpRegistry, native: bool,
             training: bool) -> tuple[PrunedGraphModule, np.ndarray, list, int]:
    """The pruned graph module of ``resolution`` (native LayerNorms when asked), its kept-id
    mask, the graph nodes whose code changed, and how many LayerNorms became native."""
    cg = a.cg
    id_kept = kept_ids(a, resolution)
    changed: list = []
    small = rewrite_pass(a.traced, cg, id_kept, registry, PrunedGraphModule, graph_changes=changed)
    small.training = training
    native_count = 0
    if native:
        native_count = to_native_layer_norm(small, [g for g in (small.graph, small.train_graph) if g is not None])
        small.recompile()
    return small, id_kept, changed, native_count


def kept_ids(a: Analysis, resolution: Resolution) -> np.ndarray:
    """The 0/1 kept mask over channel ids that ``resolution`` gives on ``a`` (checked to fit it
    and to leave every layer a channel)."""
    id_kept = a.cg.id_kept(resolution.pruned_roots(a.cg))
    _check_nonempty(a.cg, id_kept)
    return id_kept


def _landing_note(info: dict[str, Any]) -> str:
    its = info["iterations"]
    steps = "; ".join(f"{i + 1}: asked {it['asked']:.3f}, measured {it['ratio']:.3f}" if it["asked"] is not None
                      else f"{i + 1}: measured {it['ratio']:.3f}" for i, it in enumerate(its))
    goal = f" for latency={info['target']:g}" if info.get("target") is not None else ""
    return (f"measured on {info['backend']}{goal}: {info['dense_ms']:.3f} -> {info['pruned_ms']:.3f} ms "
            f"({info['speedup']:.2f}x, round_to {info['round_to']}) over {len(its)} iteration(s) ({steps})")


def _output_widths(gm: fx.GraphModule, id_kept: np.ndarray) -> list[str]:
    """A note per returned tensor that lost channels (``Plan(prune_outputs=True)``)."""
    notes = []
    for i, fs in enumerate(output_factors(gm)):
        for f in fs or ():
            for ax in f.axes:
                kept, dense = len(kept_indices(f, ax, id_kept)), f.ids.shape[f.axes.index(ax)]
                if kept < dense:
                    notes.append(f"output tensor {i} keeps {kept} of its {dense} channels on axis {ax} "
                                 "(prune_outputs=True; the kept indices are the resolution's)")
    return notes


def _check_nonempty(cg, id_kept) -> None:
    """A resolution may not remove every channel of a tensor (the layer would have zero width).
    Plans never do (the planner gives such a tensor back its best channel); a hand-made or
    learned resolution gets this error instead of a broken model."""
    for gm in cg.graph_modules:
        for n in gm.graph.nodes:
            for f in iter_factors(n.meta.get(FACTORS)):
                if f.ids.size and not id_kept[f.ids].any():
                    raise ResolutionError(f"the resolution removes every channel of `{n.name}` (axes {list(f.axes)}); "
                                          "keep at least one channel of it (plans do this automatically)")


_TOLERANCE = {torch.float64: (1e-10, 1e-8), torch.float32: (1e-5, 1e-4), torch.float16: (1e-3, 1e-2),
              torch.bfloat16: (1e-2, 5e-2)}


def default_tolerance(inputs: tuple[Any, ...]) -> tuple[float, float]:
    """(atol, rtol) for the lowest-precision floating example input (fp32 when there is none)."""
    dtypes = [x.dtype for x in inputs if isinstance(x, torch.Tensor) and x.is_floating_point()]
    worst = max(dtypes, key=lambda d: _TOLERANCE.get(d, _TOLERANCE[torch.float32])[1], default=torch.float32)
    return _TOLERANCE.get(worst, _TOLERANCE[torch.float32])


VERIFY_SEED = 7


def second_input(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The second verification input: every floating tensor replaced by seeded standard-normal
    noise of the same shape and dtype scaled to the example's mean/std (integer, boolean and
    non-tensor inputs are kept: they are usually indices). One unlucky example (all-equal
    values, a ReLU-dead batch) then cannot hide a broken rewrite."""
    g = torch.Generator().manual_seed(VERIFY_SEED)

    def noise(x: Any) -> Any:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        ref = x.detach().double()
        std = float(ref.std()) if ref.numel() > 1 else 1.0
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        return (float(ref.mean()) + (std if std > 0 else 1.0) * z).to(dtype=x.dtype, device=x.device)

    return torch.utils._pytree.tree_map(noise, inputs)


def _verify(small: PrunedGraphModule, traced: TracedModel, id_kept: np.ndarray, inputs: tuple[Any, ...],
            atol: float, rtol: float, native_norms: bool = False) -> tuple[float, float]:
    """Verify every graph on the example inputs and on ``second_input(inputs)``; with
    ``native_norms`` against the reference whose LayerNorms use kept-channel statistics."""
    pairs = [(small.graph, traced.eval_gm, "eval")]
    if traced.train_gm is not None:
        pairs.append((small.train_graph, traced.train_gm, "train"))
    err = scale = 0.0
    extra = second_input(inputs)
    for graph, dense, mode in pairs:
        masked = insert_masks(dense, id_kept)
        if native_norms:
            kept_statistics_reference(masked, id_kept)
        e, s = verify_pass(small, graph, dense, masked, inputs, id_kept, atol=atol, rtol=rtol,
                           mode=mode, extra_inputs=extra)
        err, scale = max(err, e), max(scale, s)
    return err, scale


def _report(model: nn.Module, small: PrunedGraphModule, a: Analysis, resolution: Resolution,
            id_kept: np.ndarray, err: float | None, scale: float | None, plan: Plan | None, *,
            params_model: nn.Module | None = None) -> Report:
    cg, gm = a.cg, a.traced.eval_gm
    groups = cg.groups()
    roots = cg.roots
    group_reports = []
    for g in groups:
        after = int(id_kept[g.classes].sum())
        group_reports.append(GroupReport(g.key, g.producer_modules, g.size, after, int(g.pinned.sum())))
    barriers: dict[tuple[str, str], BarrierReport] = {}
    for b in cg.barriers:
        if b.reason == "model output":
            continue
        cls = np.unique(roots[b.ids])
        n = int((cg.group_of[cls] >= 0).sum())
        key = (b.node, b.reason)
        if key in barriers:
            barriers[key].channels += n
        elif n:
            barriers[key] = BarrierReport(b.node, b.op, b.reason, n)
    notes = list(a.notes)
    if not any(g.prunable for g in groups):
        notes.append("no prunable channel group: every channel is pinned (see barriers); the model is unchanged")
    elif resolution.pruned_count == 0:
        notes.append("the plan removes no channel")
    if a.traced.auto_leaves:
        notes.append(f"{len(a.traced.auto_leaves)} submodule(s) could not be traced and were kept whole as barriers")
    if a.traced.train_gm is not None:
        notes.append("the model branches on self.training; the pruned model keeps both graphs")
    return Report(
        model=type(model).__name__,
        params_before=count_params(model), params_after=count_params(small if params_model is None else params_model),
        macs_before=count_macs(gm),
        macs_after=count_macs(gm, shape_of=lambda n: pruned_shape(n, id_kept),
                              module_of=dict(small.named_modules()).__getitem__),
        groups=group_reports, barriers=list(barriers.values()), auto_leaves=dict(a.traced.auto_leaves),
        seconds=dict(a.timer.seconds), max_abs_error=err, max_abs_reference=scale,
        train_graph=a.traced.train_gm is not None,
        notes=notes, plan=plan.to_dict() if plan is not None else None,
        fixed_arguments={k: repr(v) for k, v in a.fixed_arguments.items()},
        capture=a.capture, specialised=list(a.specialised), inputs=_input_record(a.inputs),
    )


def _input_record(inputs: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The example inputs' tensors (shape, dtype): what a saved model needs to be compiled again."""
    from torch.utils._pytree import tree_leaves

    return [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)]
