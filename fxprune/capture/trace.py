"""Tracing: torch.fx symbolic tracing with a leaf policy, automatic leaves, and shape propagation.

Leaf policy: user-named leaves, modules that have a channel rule, and torch.nn layers are leaves;
everything else is traced through. A submodule whose forward cannot be traced (data-dependent
control flow, iteration over a tensor) is rolled back out of the graph and kept as a leaf; with
no rule it becomes a barrier, and the report lists it.

FX specialises ``self.training`` at trace time, so branches that only run in training (auxiliary
heads) are invisible to an eval-mode trace. We trace in both modes; when the graphs differ the
pruned model carries both and dispatches on ``self.training``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from ..errors import FxPruneError, PlanError, TraceError
from .copying import assign_attr, clone_inputs, copy_module, keep_rng, lookup_attr, private_runner
from .graph_module import RESERVED_NAMES
from .inline import inline_forward
from .meta import TENSOR_META, describe_target, submodule

__all__ = ["FxTracer", "META_PROPAGATION_MIN_PARAMS", "RuleTable", "ShapePropagation", "TracedModel",
           "propagate_shapes", "trace", "training_mode"]

log = logging.getLogger(__name__)


class RuleTable(Protocol):
    """What tracing needs of an op registry: whether a module has a channel rule (it stays a leaf)."""

    def module_rule(self, module: nn.Module) -> Any: ...


@dataclass
class TracedModel:
    """Dense graphs over the caller's own modules (shared, never written to)."""

    root: nn.Module
    eval_gm: fx.GraphModule
    train_gm: fx.GraphModule | None
    auto_leaves: dict[str, str] = field(default_factory=dict)

    @property
    def graph_modules(self) -> list[fx.GraphModule]:
        return [self.eval_gm] + ([self.train_gm] if self.train_gm is not None else [])


class FxTracer(fx.Tracer):
    def __init__(self, registry: RuleTable | None = None, leaf_types: Sequence[type] = (),
                 leaf_names: Sequence[str] = ()) -> None:
        super().__init__()
        # buffers become graph values when read: a forward that updates one in place
        # (``num_batches_tracked.add_(1)`` in a traced-through norm layer) records the update
        # instead of running it on the caller's tensor while tracing
        self.proxy_buffer_attributes = True
        self.registry = registry
        self.leaf_types = tuple(leaf_types)
        self.leaf_names = set(leaf_names)
        self.auto_leaves: dict[str, str] = {}
        self.traced_classes: set[type] = set()
        self._param_cache: dict[str, Any] | None = None
        self._inlined: set[int] = set()

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        if isinstance(root, nn.Module):
            self.traced_classes.add(type(root))
        return super().trace(root, concrete_args)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if id(m) in self._inlined:
            return False
        if module_qualified_name in self.auto_leaves or module_qualified_name in self.leaf_names:
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        if isinstance(m, torch.jit.ScriptModule):  # opaque to fx: kept whole (and copied, never shared)
            return True
        if isinstance(m, nn.Sequential):
            return False
        if self.registry is not None and self.registry.module_rule(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        self._param_cache = parameter_proxy_cache
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        qualname = self.path_of_module(m)
        inlined = inline_forward(m, args, kwargs) if qualname not in self.leaf_names and not (
            self.leaf_types and isinstance(m, self.leaf_types)) else None
        if inlined is not None:  # traced through a functional form on its own parameters
            self._inlined.add(id(m))
            try:
                return super().call_module(m, inlined, args, kwargs)
            finally:
                self._inlined.discard(id(m))
        if self.is_leaf_module(m, qualname):
            return super().call_module(m, forward, args, kwargs)
        self.traced_classes.add(type(m))
        n_before = len(self.graph.nodes)
        stack_len = len(self.module_stack)
        num_calls = dict(self.num_calls)
        try:
            return super().call_module(m, forward, args, kwargs)
        except FxPruneError:
            raise
        except Exception as exc:  # untraceable: roll the partial trace back, keep m as a leaf
            for node in reversed(list(self.graph.nodes)[n_before:]):
                self.graph.erase_node(node)
            while len(self.module_stack) > stack_len:
                self.module_stack.popitem(last=True)
            self.num_calls = num_calls
            if self._param_cache:
                live = set(self.graph.nodes)
                for k in [k for k, p in self._param_cache.items() if p.node not in live]:
                    del self._param_cache[k]
            for inner in [k for k in self.auto_leaves if k.startswith(qualname + ".") or not qualname]:
                del self.auto_leaves[inner]
            self.auto_leaves[qualname] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.info("module %s cannot be traced (%s); kept as a leaf", qualname, self.auto_leaves[qualname])
            return super().call_module(m, forward, args, kwargs)


@contextlib.contextmanager
def training_mode(model: nn.Module, mode: bool) -> Iterator[None]:
    """Temporarily set every module's ``training`` flag; restores each module's own flag.
    (Writes the instance dict directly: ``nn.Module.__setattr__`` is slow and a plain bool
    attribute needs none of its bookkeeping.)"""
    flags = [(m, "training" in m.__dict__, m.training) for m in model.modules()]
    try:
        for m, plain, _ in flags:
            if plain:
                m.__dict__["training"] = mode
            else:  # e.g. a ScriptModule: the flag lives on the C++ object
                m.training = mode
        yield
    finally:
        for m, plain, f in flags:
            if plain:
                m.__dict__["training"] = f
            else:
                m.training = f


def _reads_training(classes: set[type]) -> bool:
    """Does any method of the traced-through classes mention ``training`` (``self.training``,
    ``training=...``)? If not, a train-mode trace would give the same graph. Conservative:
    a false positive only costs a second trace."""
    seen: set[int] = set()

    def code_mentions(code: types.CodeType) -> bool:
        if id(code) in seen:
            return False
        seen.add(id(code))
        if "training" in code.co_names or "training" in code.co_varnames:
            return True
        return any(code_mentions(c) for c in code.co_consts if isinstance(c, types.CodeType))

    for cls in classes:
        for klass in cls.__mro__:
            if klass in (nn.Module, object):
                break
            for value in vars(klass).values():
                fn = getattr(value, "__func__", value)
                code = getattr(fn, "__code__", None)
                if isinstance(code, types.CodeType) and code_mentions(code):
                    return True
    return False


def _user_frame(exc: BaseException) -> str:
    """The innermost frame of the exception that is not inside torch: where the user's code
    did something FX cannot trace."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/torch/" not in f.filename.replace("\\", "/") and "/fxprune/" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f.filename}:{f.lineno} in {f.name}: `{(f.line or '').strip()}`"


def _trace_once(model: nn.Module, tracer: FxTracer, concrete_args: dict[str, Any] | None) -> fx.GraphModule:
    try:
        graph = tracer.trace(model, concrete_args=concrete_args)
    except FxPruneError:
        raise
    except Exception as exc:
        raise TraceError(
            f"cannot trace {type(model).__name__}.forward{_user_frame(exc)}: {type(exc).__name__}: {exc}. "
            "Move the data-dependent part into a submodule (fxprune keeps untraceable submodules as leaves), "
            "pass it in `leaf_modules=[...]`, or fix the value with `concrete_args`."
        ) from exc
    for node in graph.nodes:
        # an argument fixed by concrete_args: fx renames `flag` to `flag_1` (callers pass it by name)
        # and keeps the signature's default, which its own check refuses when the fixed value differs
        if node.op == "placeholder" and concrete_args:
            base = re.sub(r"_[0-9]+\Z", "", node.target)
            if base in concrete_args and isinstance(concrete_args[base], (bool, int, float, str, type(None))):
                node.target = base
                node.args = (concrete_args[base],)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _check_reserved_names(model: nn.Module) -> None:
    """A top-level child, parameter or buffer named like a GraphModule attribute (``meta``,
    ``graph``, ``code``, ``forward_eval``, ...) cannot live on the traced or the compiled module."""
    own = list(model._modules) + list(model._parameters) + list(model._buffers)
    clash = sorted(n for n in own if n in RESERVED_NAMES)
    if clash:
        raise TraceError(
            f"{type(model).__name__} has a top-level submodule/parameter/buffer named {', '.join(f'`{n}`' for n in clash)}, "
            "a name torch.fx's GraphModule uses for itself, so the traced and the pruned model cannot hold it. "
            f"Rename it (e.g. `{clash[0]}_`) and load old checkpoints with the key renamed, or wrap the model "
            "in a parent module (nested names are fine).")


def trace(model: nn.Module, *, leaf_modules: Sequence[type | str] = (), registry: RuleTable | None = None,
          concrete_args: dict[str, Any] | None = None) -> TracedModel:
    """Trace ``model`` in eval mode and in train mode; never changes the caller's model.

    Modules ``registry`` has a rule for (``fxprune.REGISTRY`` when the compiler traces) are leaves."""
    _check_reserved_names(model)
    names = {n for n, _ in model.named_modules()}
    leaf_names = [x for x in leaf_modules if isinstance(x, str)]
    leaf_types = [x for x in leaf_modules if isinstance(x, type)]
    for name in leaf_names:
        if name not in names:
            raise PlanError(f"leaf_modules names `{name}`, which is not a submodule of {type(model).__name__}")
    before = set(vars(model))
    try:
        with training_mode(model, False):
            tracer = FxTracer(registry, leaf_types, leaf_names)
            eval_gm = _trace_once(model, tracer, concrete_args)
        auto = dict(tracer.auto_leaves)
        train_gm = None
        if _reads_training(tracer.traced_classes):
            with training_mode(model, True):
                tracer = FxTracer(registry, leaf_types, leaf_names + list(auto))
                train_gm = _trace_once(model, tracer, concrete_args)
            for k, v in tracer.auto_leaves.items():
                auto.setdefault(k, v)
    finally:
        for attr in set(vars(model)) - before:  # tensor constants the tracer parked on the root
            delattr(model, attr)
    if train_gm is not None and train_gm.code == eval_gm.code:
        train_gm = None
    else:
        log.info("%s has train-only branches; the pruned model keeps both graphs", type(model).__name__)
    return TracedModel(model, eval_gm, train_gm, auto)


class ShapePropagation(fx.Interpreter):
    """Runs the graph and stores ``TensorMetadata`` in ``node.meta["tensor_meta"]`` (like
    torch.fx's ShapeProp, without its printing of tracebacks); remembers the current node so
    failures can be named."""

    current: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        result = super().run_node(n)
        found = False

        def extract(obj: Any) -> Any:
            nonlocal found
            if isinstance(obj, torch.Tensor):
                found = True
                return _extract_tensor_metadata(obj)
            return obj

        meta = fx.node.map_aggregate(result, extract)
        if found:
            n.meta[TENSOR_META] = meta
        return result


META_PROPAGATION_MIN_PARAMS = 30_000_000
# and at least this many per graph node: meta runs each op through Python decompositions (about
# 1 ms a node), which only pays off where the layers' arithmetic is large. A 10,000-block stack of
# 16-channel convs (46M parameters, 660 per node) took 38 s in meta mode and 3 s real.
META_PROPAGATION_MIN_PARAMS_PER_NODE = 20_000


def propagate_shapes(gm: fx.GraphModule, inputs: Sequence[Any], *, mode: str = "auto") -> None:
    """Store ``tensor_meta`` on every node of ``gm`` for ``inputs`` (eval mode, no grad).

    ``mode="real"`` runs the model; ``"meta"`` runs it on meta-device copies of its layers
    (shapes only, no arithmetic), falling back to real; ``"meta-only"`` never runs the real model
    (a model on the meta device has no data to run); ``"auto"`` picks meta for models with at least
    ``META_PROPAGATION_MIN_PARAMS`` parameters (and ``META_PROPAGATION_MIN_PARAMS_PER_NODE`` per
    graph node), where the real forward dominates compile time
    (measured here: vit_l_16 0.85 s real vs 0.11 s meta; mobilenet_v3_large 0.02 s vs 0.07 s,
    copying the layers costs more than the arithmetic). Meta falls back to real for ops
    without a meta kernel."""
    if mode == "auto":
        n_params = sum(p.numel() for p in gm.parameters())
        big_layers = n_params >= META_PROPAGATION_MIN_PARAMS_PER_NODE * len(gm.graph.nodes)
        mode = "meta" if n_params >= META_PROPAGATION_MIN_PARAMS and big_layers else "real"
    if mode in ("meta", "meta-only"):
        root, meta_inputs = _meta_copy(gm, inputs)
        prop = ShapePropagation(root, graph=gm.graph)
        try:
            with torch.no_grad(), training_mode(root, False), keep_rng():
                prop.run(*meta_inputs)
            return
        except Exception as exc:  # noqa: BLE001 - an op without a meta kernel: run the real model
            if mode == "meta-only":  # a model without data: nothing real to run
                raise TraceError(_failure(gm, prop, exc, "on meta tensors") + " The model is on the meta device, so "
                                 "its shapes can only come from meta kernels: materialise it "
                                 "(model.to_empty(device='cpu')) to analyse it") from exc
            log.debug("meta shape propagation failed (%s); running the real model", exc)
    runner = private_runner(gm)  # a train graph may update running statistics in place
    prop = ShapePropagation(runner, graph=gm.graph)
    try:
        with torch.no_grad(), training_mode(runner, False), keep_rng(inputs):
            prop.run(*clone_inputs(inputs))
    except Exception as exc:
        shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__ for x in inputs]
        raise TraceError(_failure(gm, prop, exc, "on the example inputs") + f" example_inputs had shapes {shapes}; "
                         "check they are what the model expects.") from exc


def _failure(gm: fx.GraphModule, prop: ShapePropagation, exc: Exception, on: str) -> str:
    """What failed where in a shape-propagation run: the node it stopped at and the error."""
    node = prop.current
    where = f"node `{node.name}` ({describe_target(gm, node)})" if node is not None else "the model"
    message = str(exc).split("\n\nWhile executing")[0].strip()
    return f"running {where} {on} failed: {type(exc).__name__}: {message}."


def _meta_copy(gm: fx.GraphModule, inputs: Sequence[Any]) -> tuple[nn.Module, tuple[Any, ...]]:
    """A module tree holding meta-device copies of the layers and attributes ``gm`` uses."""
    memo: dict[int, Any] = {}
    for t in list(gm.parameters()) + list(gm.buffers()):
        m = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
    root = nn.Module()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            assign_attr(root, node.target, copy_module(submodule(gm, node.target), memo))
        elif node.op == "get_attr":
            value = lookup_attr(gm, node.target)
            assign_attr(root, node.target, memo.get(id(value), value))
    return root, tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)
