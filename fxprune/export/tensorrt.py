"""TensorRT engine files from ONNX, and a runner that times them with CUDA events.

Kept small on purpose: ``build_engine`` parses an ONNX file (``export_onnx``'s output), sets
one optimization profile for the batch axis, a workspace limit and a timing cache, and writes
the serialised engine; ``EngineRunner`` loads it and times ``execute_async_v3`` with CUDA
events. FP16: TensorRT 10 takes ``BuilderFlag.FP16`` on an FP32 ONNX; TensorRT 11 removed the
flag (networks are strongly typed), so FP16 engines come from an FP16 ONNX
(``export_onnx(..., fp16=True)``) — ``build_engine`` checks which one it has.

TensorRT cannot be installed on CPU-only machines (its wheels fetch their libraries from
NVIDIA's index at install time); every entry point says clearly which of TensorRT / CUDA is
missing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ExportError

__all__ = ["EngineBuild", "EngineRunner", "INSTALL_HINT", "ProfileShape", "build_engine", "profile_shapes",
           "require_cuda", "require_tensorrt", "tensorrt_version"]

log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install tensorrt (the wheel fetches its libraries from NVIDIA's index, "
                "https://pypi.nvidia.com, at install time) on a machine with an NVIDIA GPU and driver")


@dataclass(frozen=True)
class ProfileShape:
    """One input's (min, opt, max) shapes of an optimization profile."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass
class EngineBuild:
    engine_path: str
    onnx_path: str
    tensorrt_version: str
    precision: str  # "fp32" or "fp16"
    fp16_via: str | None  # "builder-flag" (TensorRT 10) or "fp16-onnx" (strong typing, TensorRT 11)
    profile: list[dict[str, Any]]
    workspace_bytes: int
    timing_cache: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, or None."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


def require_tensorrt():
    """The ``tensorrt`` module, or an ExportError naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ExportError(f"TensorRT is not installed, so no engine file can be built or run: {INSTALL_HINT}. "
                          "The ONNX file (--onnx) does not need it.") from exc
    return trt


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ExportError("no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT engines are built "
                          "for and run on an NVIDIA GPU. Build the engine on the GPU machine that will run it.")


def profile_shapes(input_shapes: dict[str, tuple[int, ...]], *, min_batch: int = 1, opt_batch: int | None = None,
                   max_batch: int | None = None) -> list[ProfileShape]:
    """An optimization profile that varies axis 0 (batch) of every input: ``min_batch`` ..
    ``max_batch`` (default: the example's batch), tuned for ``opt_batch`` (default: the example's)."""
    out = []
    for name, shape in input_shapes.items():
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or any(s < 1 for s in shape):
            raise ExportError(f"input {name!r}: a profile needs a concrete shape with a batch axis, got {shape}")
        b = shape[0]
        opt = opt_batch if opt_batch is not None else b
        mx = max_batch if max_batch is not None else max(b, opt)
        if not 1 <= min_batch <= opt <= mx:
            raise ExportError(f"input {name!r}: batch sizes must satisfy 1 <= min ({min_batch}) <= opt ({opt}) "
                              f"<= max ({mx})")
        rest = shape[1:]
        out.append(ProfileShape(name, (min_batch, *rest), (opt, *rest), (mx, *rest)))
    return out


def _onnx_is_fp16(onnx_path: str | Path) -> bool:
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    return any(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for i in m.graph.input)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, input_shapes: dict[str, tuple[int, ...]],
                 fp16: bool = False, min_batch: int = 1, opt_batch: int | None = None, max_batch: int | None = None,
                 workspace_gib: float = 4.0, timing_cache: str | Path | None = None) -> EngineBuild:
    """Build and write a TensorRT engine from ``onnx_path``.

    input_shapes: the example shape of every input (name -> shape); the profile varies the batch.
    fp16: TensorRT 10 — set the FP16 builder flag; TensorRT 11 — requires an FP16 ONNX (export
        with ``fp16=True``), built as a strongly typed network.
    timing_cache: a file to read (when it exists) and update, so rebuilds skip kernel timing."""
    trt = require_tensorrt()
    require_cuda()
    major = int(str(trt.__version__).split(".")[0])
    fp16_onnx = _onnx_is_fp16(onnx_path)
    fp16_via = None
    if major >= 11 and fp16 and not fp16_onnx:
        raise ExportError(f"TensorRT {trt.__version__} has no FP16 builder flag (strongly typed networks): export an "
                          "FP16 ONNX (export_onnx(..., fp16=True) / fxprune export --fp16) and build from that")
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    workspace = int(workspace_gib * 1024**3)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if fp16 and major < 11 and not fp16_onnx:
        config.set_flag(trt.BuilderFlag.FP16)
        fp16_via = "builder-flag"
    elif fp16 or fp16_onnx:
        fp16_via = "fp16-onnx"
    shapes = profile_shapes(input_shapes, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch)
    profile = builder.create_optimization_profile()
    for p in shapes:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    if cache_path is not None:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    build = EngineBuild(str(engine_path), str(onnx_path), str(trt.__version__), "fp16" if fp16_via else "fp32",
                        fp16_via, [asdict(p) for p in shapes], workspace, str(cache_path) if cache_path else None,
                        time.perf_counter() - t0)
    log.info("built %s (%s) in %.1fs", engine_path, build.precision, build.seconds)
    return build


class EngineRunner:
    """Runs a serialised engine on torch CUDA tensors and times it with CUDA events."""

    def __init__(self, engine_path: str | Path) -> None:
        trt = require_tensorrt()
        require_cuda()
        import torch

        self._torch, self._trt = torch, trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ExportError(f"{engine_path} is not an engine this TensorRT ({trt.__version__}) / GPU can load")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.stream = torch.cuda.Stream()

    def _dtype(self, name: str):
        t, trt = self._torch, self._trt
        return {trt.float32: t.float32, trt.float16: t.float16, trt.int32: t.int32, trt.int64: t.int64,
                trt.bfloat16: t.bfloat16}[self.engine.get_tensor_dtype(name)]

    def __call__(self, *inputs: Any) -> list[Any]:
        torch = self._torch
        if len(inputs) != len(self.inputs):
            raise ExportError(f"the engine takes {len(self.inputs)} inputs ({self.inputs}), got {len(inputs)}")
        feeds = []
        for name, x in zip(self.inputs, inputs):
            x = x.to("cuda", self._dtype(name)).contiguous()
            feeds.append(x)
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        outs = []
        for name in self.outputs:
            y = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name), device="cuda")
            outs.append(y)
            self.context.set_tensor_address(name, y.data_ptr())
        self._keep = feeds + outs
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ExportError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return outs

    def time(self, *inputs: Any, warmup: int = 20, iters: int = 100) -> list[float]:
        """Milliseconds per run (one CUDA-event pair per iteration) after ``warmup`` runs."""
        torch = self._torch
        self(*inputs)  # binds addresses
        for _ in range(warmup):
            self.context.execute_async_v3(self.stream.cuda_stream)
        times = []
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self.stream)
            self.context.execute_async_v3(self.stream.cuda_stream)
            end.record(self.stream)
            end.synchronize()
            times.append(start.elapsed_time(end))
        return times
