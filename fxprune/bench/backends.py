"""Inference backends a latency benchmark can time. Each backend turns (model, example inputs)
into a zero-argument callable plus what it actually used (providers, dtype, layout), or says why
it is unavailable. Register more with ``@backend("name", device=...)``."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BenchmarkError
from ..graph.latency import ort_session
from ..export.onnx import export_onnx
from ..export.tensorrt import EngineRunner, build_engine, tensorrt_version

__all__ = ["BACKENDS", "Backend", "Prepared", "backend", "get_backend"]


@dataclass
class Prepared:
    run: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)
    sync: Callable[[], None] | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    device: str  # "cpu" or "cuda"
    prepare: Callable[..., Prepared]
    available: Callable[[], str | None]  # None when usable, else the reason it is not
    description: str


BACKENDS: dict[str, Backend] = {}


def backend(name: str, *, device: str, description: str, available: Callable[[], str | None] = lambda: None):
    def deco(fn: Callable[..., Prepared]) -> Callable[..., Prepared]:
        BACKENDS[name] = Backend(name, device, fn, available, description)
        return fn

    return deco


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BenchmarkError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}")
    b = BACKENDS[name]
    why = b.available()
    if why:
        raise BenchmarkError(f"backend {name!r} is not available here: {why}")
    return b


def _no_cuda() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA GPU (torch.cuda.is_available() is False)"


def _no_ort() -> str | None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'fxprune[onnx]')"
    return None


def _ort_provider(provider: str) -> Callable[[], str | None]:
    def check() -> str | None:
        why = _no_ort()
        if why:
            return why
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            return f"ONNX Runtime here has no {provider} (available: {ort.get_available_providers()})"
        return _no_cuda()

    return check


def _no_trt() -> str | None:
    if tensorrt_version() is None:
        return "TensorRT is not installed (pip install tensorrt, from NVIDIA's index, on a GPU machine)"
    return _no_cuda()


@backend("eager", device="cpu", description="torch eager, fp32, CPU")
def _eager(model: nn.Module, inputs: tuple[torch.Tensor, ...], **_: Any) -> Prepared:
    net = copy.deepcopy(model).eval()

    def run():
        with torch.inference_mode():
            return net(*inputs)

    return Prepared(run, {"dtype": "float32", "device": "cpu"})


@backend("compile", device="cpu", description="torch.compile (inductor), fp32, CPU")
def _compiled(model: nn.Module, inputs: tuple[torch.Tensor, ...], **_: Any) -> Prepared:
    net = torch.compile(copy.deepcopy(model).eval(), backend="inductor")

    def run():
        with torch.inference_mode():
            return net(*inputs)

    return Prepared(run, {"dtype": "float32", "device": "cpu", "compiler": "inductor"})


def _ort_session(model: nn.Module, inputs: tuple[torch.Tensor, ...], providers: list[Any], threads: int,
                 workdir: Path, tag: str, fp16: bool = False, onnx_path: str | None = None):
    """A timing session on ``onnx_path`` (exported once by the parent) or on a fresh export."""
    if onnx_path is not None and not fp16:
        path, exporter = Path(onnx_path), "parent"
    else:
        path = workdir / f"{tag}.onnx"
        exporter = export_onnx(model, inputs, path, fp16=fp16, parity=False).exporter
    return ort_session(path, threads, providers), exporter


@backend("ort", device="cpu", description="ONNX Runtime, CPU execution provider, fp32", available=_no_ort)
def _ort_cpu(model: nn.Module, inputs: tuple[torch.Tensor, ...], *, threads: int = 0, workdir: Path | None = None,
             tag: str = "model", onnx_path: str | None = None, **_: Any) -> Prepared:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="fxprune-bench-"))
    sess, exporter = _ort_session(model, inputs, ["CPUExecutionProvider"], threads, workdir, tag, onnx_path=onnx_path)
    feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    return Prepared(lambda: sess.run(None, feed), {"providers": sess.get_providers(), "exporter": exporter,
                                                   "dtype": "float32", "device": "cpu"})


@backend("cuda-fp16", device="cuda", description="torch eager, fp16, channels_last, CUDA", available=_no_cuda)
def _cuda_fp16(model: nn.Module, inputs: tuple[torch.Tensor, ...], **_: Any) -> Prepared:
    net = copy.deepcopy(model).eval().cuda().half().to(memory_format=torch.channels_last)
    xs = tuple(x.cuda().half().contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x.cuda().half()
               for x in inputs)

    def run():
        with torch.inference_mode():
            return net(*xs)

    return Prepared(run, {"dtype": "float16", "layout": "channels_last", "device": torch.cuda.get_device_name()},
                    torch.cuda.synchronize)


@backend("cuda-graphs", device="cuda", description="torch fp16 channels_last replayed from a CUDA graph",
         available=_no_cuda)
def _cuda_graphs(model: nn.Module, inputs: tuple[torch.Tensor, ...], **_: Any) -> Prepared:
    net = copy.deepcopy(model).eval().cuda().half().to(memory_format=torch.channels_last)
    xs = tuple(x.cuda().half().contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x.cuda().half()
               for x in inputs)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            net(*xs)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        net(*xs)
    return Prepared(graph.replay, {"dtype": "float16", "layout": "channels_last", "cuda_graph": True,
                                   "device": torch.cuda.get_device_name()}, torch.cuda.synchronize)


@backend("cuda-compile", device="cuda", description="torch.compile (inductor, max-autotune-no-cudagraphs), fp16",
         available=_no_cuda)
def _cuda_compile(model: nn.Module, inputs: tuple[torch.Tensor, ...], *,
                  compile_mode: str = "max-autotune-no-cudagraphs", **_: Any) -> Prepared:
    net = torch.compile(copy.deepcopy(model).eval().cuda().half().to(memory_format=torch.channels_last),
                        mode=compile_mode)
    xs = tuple(x.cuda().half().contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x.cuda().half()
               for x in inputs)

    def run():
        with torch.inference_mode():
            return net(*xs)

    return Prepared(run, {"dtype": "float16", "layout": "channels_last", "compiler": "inductor", "mode": compile_mode,
                          "device": torch.cuda.get_device_name()}, torch.cuda.synchronize)


def _ort_gpu(provider: str):
    def prepare(model: nn.Module, inputs: tuple[torch.Tensor, ...], *, threads: int = 0,
                workdir: Path | None = None, tag: str = "model", onnx_path: str | None = None, **_: Any) -> Prepared:
        workdir = workdir or Path(tempfile.mkdtemp(prefix="fxprune-bench-"))
        sess, exporter = _ort_session(model, inputs, [provider, "CPUExecutionProvider"], threads, workdir, tag,
                                      onnx_path=onnx_path)
        used = sess.get_providers()
        if used[0] != provider:
            raise BenchmarkError(f"ONNX Runtime fell back to {used} instead of {provider}")
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        return Prepared(lambda: sess.run(None, feed), {"providers": used, "exporter": exporter, "dtype": "float32"})

    return prepare


backend("ort-cuda", device="cuda", description="ONNX Runtime, CUDA execution provider",
        available=_ort_provider("CUDAExecutionProvider"))(_ort_gpu("CUDAExecutionProvider"))
backend("ort-trt", device="cuda", description="ONNX Runtime, TensorRT execution provider",
        available=_ort_provider("TensorrtExecutionProvider"))(_ort_gpu("TensorrtExecutionProvider"))


@backend("trt", device="cuda", description="TensorRT engine (fp16), timed with CUDA events", available=_no_trt)
def _trt(model: nn.Module, inputs: tuple[torch.Tensor, ...], *, workdir: Path | None = None, tag: str = "model",
         **_: Any) -> Prepared:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="fxprune-bench-"))
    major = int(str(tensorrt_version()).split(".")[0])
    exp = export_onnx(model, inputs, workdir / f"{tag}.onnx", fp16=major >= 11, parity=False)
    build = build_engine(exp.path, workdir / f"{tag}.engine", fp16=True,
                         input_shapes={n: tuple(x.shape) for n, x in zip(exp.input_names, inputs)},
                         timing_cache=workdir / "timing.cache")
    runner = EngineRunner(build.engine_path)
    runner(*inputs)
    ctx, stream = runner.context, runner.stream
    return Prepared(lambda: ctx.execute_async_v3(stream.cuda_stream),
                    {"tensorrt": build.tensorrt_version, "precision": build.precision, "fp16_via": build.fp16_via},
                    stream.synchronize)
