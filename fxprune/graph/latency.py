"""Per-layer latency tables, the backend's width granularity, and the latency cost model behind
``Plan(latency=..., backend=...)``.

Every convolution / linear layer of the traced graph is timed alone on the target backend at its
real input shape over a grid of kept widths (``GRID``: 1, 7/8, ... 1/8 of each prunable channel
axis, rounded to the backend's step), with the widths of all its prunable axes scaled together.
Its latency is a piecewise-linear function of ``f``, the product of the kept fractions of those
axes (the MACs fraction of the layer), interpolated between the measured widths; below the
smallest it stays flat. Whatever the whole model takes beyond the sum of its layers (pooling,
adds, unfused activations) is a fixed cost. Tables are cached per (backend, threads, library
versions, layer shapes, step) under ``$FXPRUNE_CACHE_DIR`` (default ``~/.cache/fxprune/latency``);
identical layers (a ResNet's repeated blocks) are timed once.

The step (``backend_step``) is the channel granularity the backend runs well, measured: a probe
network (1x1, depthwise 3x3, 1x1 and 3x3 convolutions, all one width) is timed whole at every width
from 33 to 64, at 28x28 and 14x14, and the step is the largest multiple within 1% of the best gain
from rounding up (``detect_step``). On ONNX Runtime CPU, widths that are not multiples of 4 leave
its blocked (NCHWc) kernels (a depthwise layer then runs 2x slower). Single layers timed alone
would mislead here: each one-node graph pays the NCHWc reorders that a real model pays once.

Backends (``LATENCY_BACKENDS``; ``register_latency_backend`` adds one): "ort" — each layer is a
one-node ONNX graph (Conv / Gemm) in an ONNX Runtime CPU session; "eager" — the torch module
itself, CPU. The whole-model time uses the same backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import fx, nn

from ..capture.meta import node_shape, submodule
from .. import progress
from ..errors import PlanError
from ..timing import sample
from .channel_graph import ChannelGraph
from .costmodel import CostModel
from .params import weight_norm_of

__all__ = ["GRID", "LATENCY_BACKENDS", "PAIR_ROUNDS", "ROUNDS", "STEP_CANDIDATES", "LayerTimer", "ModelPair",
           "backend_step", "cache_dir", "detect_step", "latency_model", "measure_model", "ort_session",
           "register_latency_backend", "width_grid"]

log = logging.getLogger(__name__)

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
ROUNDS = 2  # each width is timed in ROUNDS alternating rounds; the smallest median counts
GRID = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)  # kept fractions a layer is timed at
STEP_CANDIDATES = (1, 2, 4, 8, 16, 32)
PROBE_WIDTHS = range(33, 65)


class LayerTimer(Protocol):
    """What a latency backend times: one layer alone at an input shape, and a whole graph.
    A backend may also offer ``runner(gm, inputs)``: a callable that runs the prepared graph once
    (exported and loaded once), which paired measurements (``ModelPair``) time in alternation."""

    def layer(self, m: nn.Module, in_shape: tuple[int, ...]) -> float: ...

    def model(self, gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> float: ...


PAIR_ROUNDS = 6  # alternating rounds of a paired measurement (each ~0.25 s per model at most)


class ModelPair:
    """Whole-model latency of a dense graph against pruned ones, measured in alternation.

    A shared machine's load drifts: timing the pruned model, then the dense one, once each, lets a
    spike land on either (a ConvNeXt-T measured 81 ms dense in one run and 53 ms in the next here).
    ``ModelPair`` prepares the dense graph once (its ONNX session is kept across the closed loop's
    rounds), then alternates short medians of the two ``PAIR_ROUNDS`` times and keeps each one's
    best: both see the same load. Backends without ``runner`` are timed whole, one after the other."""

    def __init__(self, dense: fx.GraphModule, inputs: tuple[torch.Tensor, ...], backend: str,
                 threads: int | None = None) -> None:
        self.threads = threads or torch.get_num_threads()
        self.timer, self.inputs = _backend(backend)[0](self.threads), inputs
        self.dense = dense
        self._dense_run = None

    def _times(self, gms: list[fx.GraphModule]) -> list[float]:
        """Best short median of each graph over ``PAIR_ROUNDS`` rounds, in alternating order."""
        with _threads(self.threads):
            if not hasattr(self.timer, "runner"):
                return [_whole_ms(self.timer, g, self.inputs) for g in gms]
            if self._dense_run is None:
                self._dense_run = self.timer.runner(self.dense, self.inputs)
            runs = [self._dense_run if g is self.dense else self.timer.runner(g, self.inputs) for g in gms]
            best = [float("inf")] * len(runs)
            for r in range(PAIR_ROUNDS):
                for k in (range(len(runs)) if r % 2 == 0 else reversed(range(len(runs)))):
                    best[k] = min(best[k], _median(runs[k], iters=15, max_seconds=0.25, warmup=5 if r == 0 else 1))
            return best

    def dense_ms(self) -> float:
        return self._times([self.dense])[0]

    def measure(self, pruned: fx.GraphModule) -> tuple[float, float]:
        """(pruned ms, dense ms), timed in alternation."""
        pruned_ms, dense_ms = self._times([pruned, self.dense])
        return pruned_ms, dense_ms


def _whole_ms(timer: LayerTimer, gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> float:
    """The best of ``ROUNDS`` medians of the whole graph, prepared (exported) once where the
    backend offers ``runner``."""
    if hasattr(timer, "runner"):
        run = timer.runner(gm, inputs)
        return min(_median(run, iters=30) for _ in range(ROUNDS))
    return min(timer.model(gm, inputs) for _ in range(ROUNDS))


def _write_atomically(path: Path, text: str) -> None:
    """Write a cache file so that another process reading it meanwhile sees the old file or the
    new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    return Path(os.environ.get("FXPRUNE_CACHE_DIR", Path.home() / ".cache" / "fxprune")) / "latency"


def _resized(m: nn.Module, out_c: int, in_c: int) -> nn.Module:
    """A copy of ``m`` (random weights) with ``out_c`` output and ``in_c`` input channels
    (depthwise: both and the groups are ``out_c``; grouped: the group count stays)."""
    if isinstance(m, nn.Linear):
        return nn.Linear(in_c, out_c, bias=m.bias is not None)
    groups = m.groups
    if groups > 1:
        if groups == m.in_channels == m.out_channels:
            in_c = groups = out_c
        else:
            out_c = max(groups, (out_c // groups) * groups)
            in_c = max(groups, (in_c // groups) * groups)
    return type(m)(in_c, out_c, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, groups=groups,
                   bias=m.bias is not None, padding_mode=m.padding_mode)


def _macs(m: nn.Module, out_c: int, in_c: int, groups: int | None = None) -> float:
    if isinstance(m, nn.Linear):
        return float(out_c * in_c)
    g = groups if groups is not None else m.groups
    return float(out_c * (in_c // g) * int(np.prod(m.kernel_size)))


class _Timer:
    """The built-in CPU backends ("eager", "ort")."""

    def __init__(self, backend: str, threads: int) -> None:
        self.backend, self.threads = backend, threads

    def layer(self, m: nn.Module, in_shape: tuple[int, ...]) -> float:
        x = torch.randn(*in_shape)
        if self.backend == "eager":
            net = m.eval()

            def run():
                with torch.inference_mode():
                    net(x)

            return _median(run)
        return self._ort(_onnx_layer(m, in_shape), x)

    def model(self, gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> float:
        return _median(self.runner(gm, inputs), iters=30)

    def runner(self, gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...]):
        """One run of ``gm`` on the backend, prepared (exported, session loaded) once."""
        if self.backend == "eager":
            net = gm.eval()

            def run():
                with torch.inference_mode():
                    net(*inputs)

            return run
        with tempfile.TemporaryDirectory(prefix="fxprune-latency-") as tmp:  # a big model's ONNX is 100 MB
            path = Path(tmp) / "model.onnx"
            with torch.no_grad():
                torch.onnx.export(gm.eval(), inputs, str(path), dynamo=False, opset_version=18)
            model = path.read_bytes()
        sess = ort_session(model, self.threads, ["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        return lambda: sess.run(None, feed)

    def _ort(self, model_bytes: bytes, *inputs: torch.Tensor, iters: int = 20) -> float:
        sess = ort_session(model_bytes, self.threads, ["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        return _median(lambda: sess.run(None, feed), iters=iters)


def _ort_versions() -> dict[str, str]:
    import onnxruntime  # optional dependency (the onnx extra)

    return {"ort": onnxruntime.__version__}


# name -> (factory(threads) -> LayerTimer, versions() -> what else the cache key depends on)
LATENCY_BACKENDS: dict[str, tuple[Callable[[int], LayerTimer], Callable[[], dict[str, str]]]] = {
    "ort": (lambda threads: _Timer("ort", threads), _ort_versions),
    "eager": (lambda threads: _Timer("eager", threads), dict),
}


def register_latency_backend(name: str, factory: Callable[[int], LayerTimer],
                             versions: Callable[[], dict[str, str]] = dict) -> None:
    """Make ``Plan(latency=..., backend=name)`` time layers with ``factory(threads)``: an object
    with ``layer(module, input_shape) -> ms`` and ``model(graph_module, inputs) -> ms``
    (``versions()`` names what its timings depend on, for the cache key)."""
    if not isinstance(name, str) or not name:
        raise PlanError(f"a latency backend needs a name, got {name!r}")
    LATENCY_BACKENDS[name] = (factory, versions)


def _backend(backend: str) -> tuple[Callable[[int], LayerTimer], Callable[[], dict[str, str]]]:
    if backend not in LATENCY_BACKENDS:
        raise PlanError(f"latency tables can be measured on {sorted(LATENCY_BACKENDS)}, not {backend!r}")
    return LATENCY_BACKENDS[backend]


def _cache_key(backend: str, threads: int, payload: Any) -> str:
    src = json.dumps({"backend": backend, "threads": threads, "torch": torch.__version__,
                      "versions": _backend(backend)[1](), "payload": payload}, sort_keys=True)
    return hashlib.sha256(src.encode()).hexdigest()[:20]


class _threads:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.saved)


def detect_step(curves: Sequence[Mapping[int, float]], candidates: Sequence[int] = STEP_CANDIDATES,
                tolerance: float = 0.01) -> int:
    """The width step a backend runs well, from latency curves (width -> ms) of probe layers:
    for each candidate step, the time every measured width takes once rounded up to a multiple of
    the step (summed over widths, relative to the unrounded time, averaged over the curves). Of the
    steps within ``tolerance`` of the best gain the largest wins: rounding up to it is free (a
    staircase whose treads are ``step`` wide) or pays (off-step widths that run slower), so the
    kept channels it adds cost nothing."""
    gains = {}
    for s in candidates:
        ratios = []
        for curve in curves:
            widths = [w for w in curve if -(-w // s) * s in curve]
            if not widths:
                break
            ratios.append(sum(curve[w] for w in widths) / sum(curve[-(-w // s) * s] for w in widths))
        else:
            gains[s] = float(np.mean(ratios))
    if not gains:
        raise ValueError("detect_step needs curves that contain the rounded-up widths")
    best = max(gains.values())
    return max(s for s, g in gains.items() if g >= best * (1 - tolerance))


_STEPS: dict[tuple[str, int, str], int] = {}


def _probe(w: int) -> nn.Module:
    """A MobileNet-style block and a 3x3 convolution, all ``w`` wide: what the step is measured on.
    Timed as one graph, so a backend's layout changes between layers (ORT's NCHW <-> NCHWc
    reorders) are paid once, as in a real model, not once per layer."""
    return nn.Sequential(nn.Conv2d(w, w, 1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1, groups=w), nn.ReLU(),
                         nn.Conv2d(w, w, 1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU()).eval()


def backend_step(backend: str, threads: int | None = None, *, use_cache: bool = True) -> int:
    """The channel granularity ``backend`` runs well, measured once per backend / threads /
    library versions (cached): probe convolutions timed at every width 33..64 (``detect_step``)."""
    threads = threads or torch.get_num_threads()
    factory, _ = _backend(backend)
    memo_key = (backend, threads, str(cache_dir()))
    if use_cache and memo_key in _STEPS:
        return _STEPS[memo_key]
    path = cache_dir() / f"step-{backend}-{_cache_key(backend, threads, list(PROBE_WIDTHS))}.json"
    if use_cache and path.exists():
        _STEPS[memo_key] = int(json.loads(path.read_text())["step"])
        return _STEPS[memo_key]
    t0 = time.perf_counter()
    timer = factory(threads)
    curves: list[dict[int, float]] = []
    with _threads(threads):
        for hw in (28, 14):
            probes = {w: (fx.symbolic_trace(_probe(w)), (torch.randn(1, w, hw, hw),)) for w in PROBE_WIDTHS}
            curve = {w: float("inf") for w in PROBE_WIDTHS}
            for _ in range(ROUNDS):
                for w, (gm, x) in probes.items():
                    curve[w] = min(curve[w], timer.model(gm, x))
            curves.append(curve)
    step = detect_step(curves)
    log.info("backend %s: width step %d (measured in %.1fs)", backend, step, time.perf_counter() - t0)
    if use_cache:
        _STEPS[memo_key] = step
        _write_atomically(path, json.dumps({"backend": backend, "threads": threads, "step": step,
                                            "curves": [{str(k): v for k, v in c.items()} for c in curves]}, indent=1))
    return step


def width_grid(size: int, step: int, grid: Sequence[float] = GRID) -> list[int]:
    """The widths a layer axis of ``size`` channels is timed at: ``grid`` fractions rounded up
    to ``step`` (never above ``size``), distinct, largest first."""
    out = []
    for r in grid:
        w = min(size, max(min(step, size), -(-math.ceil(r * size - 1e-9) // step) * step))
        if w not in out:
            out.append(w)
    return out


def measure_model(gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...], backend: str,
                  threads: int | None = None) -> float:
    """Latency (ms) of the whole graph on ``backend``: the best of ``ROUNDS`` medians."""
    threads = threads or torch.get_num_threads()
    timer = _backend(backend)[0](threads)
    with _threads(threads):
        return _whole_ms(timer, gm, inputs)


def ort_session(model: str | Path | bytes, threads: int, providers: list[Any]):
    """An ONNX Runtime session set up for timing: all graph optimisations, ``threads`` intra-op
    threads (0: ORT's default), one inter-op thread, no spin-waiting."""
    import onnxruntime as ort  # optional dependency (the onnx extra)

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so, providers=providers)


def _median(fn, iters: int = 20, max_seconds: float = 1.0, warmup: int = 5) -> float:
    ms = sample(fn, warmup=warmup, iters=iters, max_seconds=max_seconds)
    return float(np.median(ms))


def _onnx_layer(m: nn.Module, in_shape: tuple[int, ...]) -> bytes:
    """A one-node ONNX model of a conv / linear layer with random weights of its shape."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal(tuple(m.weight.shape)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W")]
    ins = ["X", "W"]
    if m.bias is not None:
        inits.append(numpy_helper.from_array(np.zeros(m.weight.shape[0], np.float32), "B"))
        ins.append("B")
    nodes = None
    if isinstance(m, nn.Linear) and len(in_shape) != 2:  # a linear layer over (N, ..., C): MatMul (+ Add)
        inits[0] = numpy_helper.from_array(np.ascontiguousarray(w.T), "W")
        nodes = [helper.make_node("MatMul", ["X", "W"], ["Y" if m.bias is None else "XW"])]
        if m.bias is not None:
            nodes.append(helper.make_node("Add", ["XW", "B"], ["Y"]))
        out_shape = [*in_shape[:-1], m.out_features]
    elif isinstance(m, nn.Linear):
        node = helper.make_node("Gemm", ins, ["Y"], transB=1)
        out_shape = [in_shape[0], m.out_features]
    else:
        pads = list(m.padding) * 2 if not isinstance(m.padding, str) else None
        kwargs = {"kernel_shape": list(m.kernel_size), "strides": list(m.stride), "dilations": list(m.dilation),
                  "group": m.groups}
        if pads is not None:
            kwargs["pads"] = pads
        else:
            kwargs["auto_pad"] = "SAME_UPPER" if m.padding == "same" else "VALID"
        node = helper.make_node("Conv", ins, ["Y"], **kwargs)
        out_shape = None
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, list(in_shape))
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes or [node], "layer", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _layer_nodes(cg: ChannelGraph, gm: fx.GraphModule) -> list[tuple[fx.Node, nn.Module, tuple[int, ...], list]]:
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = submodule(gm, node.target)
        if not isinstance(m, _LAYERS) or type(m) not in _LAYERS:
            continue
        src = node.args[0] if node.args else None
        in_shape = node_shape(src) if isinstance(src, fx.Node) else None
        if in_shape is None:
            continue
        norm = weight_norm_of(m, "weight")
        name = cg.canonical(f"{node.target}.{norm[1]}" if norm is not None else f"{node.target}.weight")
        axes = [(a, cg.param_axes[(name, a)]) for a in range(m.weight.ndim) if (name, a) in cg.param_axes]
        out.append((node, m, in_shape, axes))
    return out


def _variants(m: nn.Module, in_shape: tuple[int, ...], live_out: bool, live_in: bool,
              step: int) -> list[tuple[nn.Module, tuple[int, ...], float]]:
    """(module, input shape, MACs fraction) of ``m`` at every grid width of its live axes (the
    axes scaled together); the first is ``m`` itself."""
    o_full, i_full = _dims(m)
    depthwise = not isinstance(m, nn.Linear) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    outs = width_grid(o_full, step) if (live_out or (depthwise and live_in)) else [o_full]
    ins = width_grid(i_full, step) if (live_in and not depthwise) else [i_full]
    n = max(len(outs), len(ins))
    outs, ins = outs + outs[-1:] * (n - len(outs)), ins + ins[-1:] * (n - len(ins))
    dense = _macs(m, o_full, i_full)
    out, seen = [], set()
    for o, i in zip(outs, ins):
        v = m if (o, i) == (o_full, i_full) else _resized(m, o, i)
        o, i = _dims(v)
        if (o, i) in seen:
            continue
        seen.add((o, i))
        shape = list(in_shape)
        shape[-1 if isinstance(m, nn.Linear) else 1] = i
        out.append((v, tuple(shape), _macs(v, o, i) / dense))
    return out


def latency_model(cg: ChannelGraph, gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...] | None = None, *,
                  backend: str = "ort", threads: int | None = None, use_cache: bool = True,
                  step: int = 1) -> CostModel:
    """Latency (ms) of ``gm`` at the shapes of ``inputs`` (default: random tensors of the
    placeholders' propagated shapes) on ``backend`` as a function of the kept channels (a
    ``CostModel`` with one piecewise-linear curve per layer, which the budget planner uses like
    the MACs model). Layers are timed at widths that are multiples of ``step``."""
    threads = threads or torch.get_num_threads()
    factory, _ = _backend(backend)
    if inputs is None:
        shapes = [node_shape(n) for n in gm.graph.nodes if n.op == "placeholder"]
        if any(s is None for s in shapes):
            raise PlanError("a latency budget needs tensor inputs with known shapes (the example inputs)")
        inputs = tuple(torch.randn(*s) for s in shapes)
    prunable = np.zeros(cg.uf.n, dtype=bool)
    for g in cg.groups():
        prunable[g.classes[~g.pinned]] = True
    roots = cg.roots
    layers = _layer_nodes(cg, gm)
    specs = []
    for node, m, in_shape, axes in layers:
        live = {a for a, ids in axes if prunable[roots[ids]].any()}
        specs.append({"node": node.name, "module": repr(m), "in_shape": list(in_shape),
                      "live_out": 0 in live, "live_in": 1 in live})
    key = _cache_key(backend, threads, {"inputs": [list(x.shape) for x in inputs], "layers": specs, "step": step,
                                        "grid": list(GRID)})
    path = cache_dir() / f"{backend}-{key}.json"
    table = None
    if use_cache and path.exists():
        table = json.loads(path.read_text())
        log.info("latency table from cache %s", path)
    if table is None:
        t0 = time.perf_counter()
        timer = factory(threads)
        memo: dict[tuple[str, tuple[int, ...]], float] = {}  # identical layers are timed once
        with _threads(threads):
            rows = []
            for i, ((node, m, in_shape, _), spec) in enumerate(zip(layers, specs)):
                progress.step(f"latency table on {backend}: layer {i + 1}/{len(layers)} ({node.name})")
                variants = _variants(m, in_shape, spec["live_out"], spec["live_in"], step)
                todo = [(repr(v), s) for v, s, _ in variants]
                if any(k not in memo for k in todo):
                    best = [float("inf")] * len(variants)
                    for _ in range(ROUNDS):  # alternate the widths; keep each one's best median
                        for j, (v, s, _) in enumerate(variants):
                            best[j] = min(best[j], timer.layer(v, s))
                    memo.update(zip(todo, best))
                points = sorted(([f, memo[k]] for (_, _, f), k in zip(variants, todo)), reverse=True)
                for j in range(1, len(points)):  # a narrower layer never costs more than a wider one
                    points[j][1] = min(points[j][1], points[j - 1][1])
                rows.append({"node": node.name, "points": points[::-1]})
            progress.step(f"latency table on {backend}: the whole model")
            total = _whole_ms(timer, gm, inputs)
        table = {"backend": backend, "threads": threads, "step": step, "total_ms": total, "layers": rows,
                 "timed_layers": len(memo), "seconds": time.perf_counter() - t0}
        if use_cache:
            _write_atomically(path, json.dumps(table, indent=1))
        log.info("measured a latency table for %d layers (%d distinct widths) on %s in %.1fs", len(rows),
                 len(memo), backend, table["seconds"])
    layer_sum = sum(row["points"][-1][1] for row in table["layers"])
    rest = table["total_ms"] - layer_sum
    scale = 1.0 if rest >= 0 or layer_sum <= 0 else table["total_ms"] / layer_sum  # layers alone over-predict
    terms: list[tuple[float, list[np.ndarray]]] = []
    curves: list[tuple[np.ndarray, np.ndarray]] = []
    constant = max(0.0, rest)
    for (node, m, in_shape, axes), row in zip(layers, table["layers"]):
        f, t = (np.array(c, dtype=np.float64) for c in zip(*row["points"]))
        t = t * scale
        if len(f) == 1:
            constant += float(t[-1])
            continue
        terms.append((1.0, [ids for _, ids in axes]))
        curves.append((np.concatenate([[0.0], f]), np.concatenate([[t[0]], t])))
    model = CostModel(cg, terms, constant, f"latency on {backend} (ms)", curves=curves)
    model.table = table  # type: ignore[attr-defined]
    return model


def _dims(m: nn.Module) -> tuple[int, int]:
    if isinstance(m, nn.Linear):
        return m.out_features, m.in_features
    return m.out_channels, m.in_channels
