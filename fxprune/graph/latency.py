"""Per-layer latency tables and the latency cost model behind ``Plan(latency=..., backend=...)``.

Every convolution / linear layer of the traced graph is timed alone on the target backend at its
real input shape, once at full width and once with its prunable channel axes halved. Its latency
is modelled as ``a + b * f`` where ``f`` is the product of the kept fractions of those axes (the
same multilinear form as the MACs model, so the planner's budget searches work unchanged): ``b``
is what channel pruning can save, ``a`` (launch / memory-bound overhead) is fixed. Whatever the
whole model takes beyond the sum of its layers (pooling, adds, unfused activations) is a fixed
cost too. Tables are cached per (backend, threads, library versions, layer shapes) under
``$FXPRUNE_CACHE_DIR`` (default ``~/.cache/fxprune/latency``).

Backends: "ort" — each layer is a one-node ONNX graph (Conv / Gemm) in an ONNX Runtime CPU
session; "eager" — the torch module itself, CPU. The whole-model time uses the same backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..capture.meta import node_shape, submodule
from ..errors import PlanError
from ..timing import sample
from .channel_graph import ChannelGraph


from .params import weight_norm_of
from .costmodel import CostModel

__all__ = ["LATENCY_BACKENDS", "ROUNDS", "cache_dir", "latency_model", "ort_session"]

log = logging.getLogger(__name__)

LATENCY_BACKENDS = ("ort", "eager")
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
ROUNDS = 2  # each width is timed in ROUNDS alternating rounds; the smallest median counts


def cache_dir() -> Path:
    return Path(os.environ.get("FXPRUNE_CACHE_DIR", Path.home() / ".cache" / "fxprune")) / "latency"


def _halved(m: nn.Module, halve_out: bool, halve_in: bool) -> tuple[nn.Module, int, int]:
    """A copy of ``m`` with its output / input channels halved (depthwise: both and the groups)."""
    if isinstance(m, nn.Linear):
        o = max(1, m.out_features // 2) if halve_out else m.out_features
        i = max(1, m.in_features // 2) if halve_in else m.in_features
        return nn.Linear(i, o, bias=m.bias is not None), o, i
    groups = m.groups
    o = max(1, m.out_channels // 2) if halve_out else m.out_channels
    i = max(1, m.in_channels // 2) if halve_in else m.in_channels
    if groups > 1:
        if groups == m.in_channels == m.out_channels:  # depthwise: one axis in the weight
            o = i = groups = max(1, m.out_channels // 2) if (halve_out or halve_in) else m.out_channels
        else:  # grouped: keep the group count, halve the per-group widths
            o = max(groups, (o // groups) * groups)
            i = max(groups, (i // groups) * groups)
    cls = type(m)
    new = cls(i, o, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, groups=groups,
              bias=m.bias is not None, padding_mode=m.padding_mode)
    return new, o, i


def _macs(m: nn.Module, out_c: int, in_c: int, groups: int | None = None) -> float:
    if isinstance(m, nn.Linear):
        return float(out_c * in_c)
    g = groups if groups is not None else m.groups
    return float(out_c * (in_c // g) * int(np.prod(m.kernel_size)))


class _Timer:
    def __init__(self, backend: str, threads: int) -> None:
        self.backend, self.threads = backend, threads
        self.tmp = Path(tempfile.mkdtemp(prefix="fxprune-latency-"))

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
        if self.backend == "eager":
            net = gm.eval()

            def run():
                with torch.inference_mode():
                    net(*inputs)

            return _median(run, iters=30)
        path = self.tmp / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(gm.eval(), inputs, str(path), dynamo=False, opset_version=18)
        return self._ort(path.read_bytes(), *inputs, iters=30)

    def _ort(self, model_bytes: bytes, *inputs: torch.Tensor, iters: int = 20) -> float:
        sess = ort_session(model_bytes, self.threads, ["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        return _median(lambda: sess.run(None, feed), iters=iters)


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


def _median(fn, iters: int = 20) -> float:
    ms = sample(fn, warmup=5, iters=iters, max_seconds=1.0)
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
    if isinstance(m, nn.Linear):
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
    graph = helper.make_graph([node], "layer", [x], [y], inits)
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


def latency_model(cg: ChannelGraph, gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...] | None = None, *,
                  backend: str = "ort", threads: int | None = None, use_cache: bool = True) -> CostModel:
    """Latency (ms) of ``gm`` at the shapes of ``inputs`` (default: random tensors of the
    placeholders' propagated shapes) on ``backend`` as a multilinear function of the kept
    channels (a ``CostModel`` the budget planner uses like the MACs model)."""
    threads = threads or torch.get_num_threads()
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
                      "halve_out": 0 in live, "halve_in": 1 in live})
    import onnxruntime

    key_src = json.dumps({"backend": backend, "threads": threads, "torch": torch.__version__,
                          "ort": onnxruntime.__version__, "inputs": [list(x.shape) for x in inputs], "layers": specs},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = cache_dir() / f"{backend}-{key}.json"
    table = None
    if use_cache and path.exists():
        table = json.loads(path.read_text())
        log.info("latency table from cache %s", path)
    if table is None:
        t0 = time.perf_counter()
        timer = _Timer(backend, threads)
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            rows = []
            for (node, m, in_shape, _), spec in zip(layers, specs):
                small, o, i = _halved(m, spec["halve_out"], spec["halve_in"])
                half_in = list(in_shape)
                half_in[1 if len(in_shape) > 1 and not isinstance(m, nn.Linear) else -1] = i
                full, half = float("inf"), float("inf")
                for _ in range(ROUNDS):  # alternate the two widths; keep each one's best median
                    full = min(full, timer.layer(m, in_shape))
                    if spec["halve_out"] or spec["halve_in"]:
                        half = min(half, timer.layer(small, tuple(half_in)))
                half = min(half, full)
                frac = _macs(small, o, i, getattr(small, "groups", None)) / _macs(m, *_dims(m))
                rows.append({"node": node.name, "full_ms": full, "half_ms": half, "fraction": frac})
            total = min(timer.model(gm, inputs) for _ in range(ROUNDS))
        finally:
            torch.set_num_threads(saved)
        table = {"backend": backend, "threads": threads, "total_ms": total, "layers": rows,
                 "seconds": time.perf_counter() - t0}
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(table, indent=1))
        log.info("measured a latency table for %d layers on %s in %.1fs", len(rows), backend, table["seconds"])
    terms: list[tuple[float, list[np.ndarray]]] = []
    constant, layer_sum = 0.0, 0.0
    for (node, m, in_shape, axes), row in zip(layers, table["layers"]):
        full, half, frac = row["full_ms"], row["half_ms"], row["fraction"]
        b = max(0.0, (full - half) / (1.0 - frac)) if frac < 1.0 else 0.0
        b = min(b, full)
        terms.append((b, [ids for _, ids in axes]))
        constant += full - b
        layer_sum += full
    constant += max(0.0, table["total_ms"] - layer_sum)
    model = CostModel(cg, terms, constant, f"latency on {backend} (ms)")
    model.table = table  # type: ignore[attr-defined]
    return model


def _dims(m: nn.Module) -> tuple[int, int]:
    if isinstance(m, nn.Linear):
        return m.out_features, m.in_features
    return m.out_channels, m.in_channels
