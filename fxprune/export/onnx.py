"""ONNX export of (pruned) models: one file, dynamic batch axis, the dynamo exporter with a
recorded fallback to the TorchScript one, ``onnx.checker`` and an ONNX Runtime parity check."""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ExportError

__all__ = ["EXPORTERS", "OnnxExport", "TWO_GB", "export_onnx", "ort_parity"]

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")
TWO_GB = 2 * 1024**3


@dataclass
class OnnxExport:
    """What ``export_onnx`` wrote and how."""

    path: str
    exporter: str  # "dynamo" or "torchscript": the one that produced the file
    opset: int
    dtype: str  # "float32" or "float16"
    dynamic_batch: bool
    external_data: bool
    input_names: list[str]
    output_names: list[str]
    seconds: float
    fallback_reason: str | None = None  # why the dynamo exporter was not used, when it was not
    parity: dict[str, Any] | None = None  # max_abs_error, tolerance, ok, providers
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ExportError("example_inputs must be a tensor or a tuple of tensors (the model's positional inputs)")
    return tuple(inputs)


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def export_onnx(model: nn.Module, example_inputs: Any, path: str | Path, *, opset: int = 18,
                dynamic_batch: bool | None = None, exporter: str = "auto", fp16: bool = False, check: bool = True,
                parity: bool = True, input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None) -> OnnxExport:
    """Export ``model`` (in eval mode; the caller's module is not modified) to one ONNX file.

    exporter: "dynamo" (``torch.onnx.export(dynamo=True)``), "torchscript" (``dynamo=False``) or
        "auto" (dynamo, falling back to TorchScript when it fails; the reason is recorded).
    fp16: export a float16 model (weights, activations, inputs and outputs): the FP16 ONNX that
        TensorRT 11's strongly typed networks build FP16 engines from.
    dynamic_batch: axis 0 of every input and output is symbolic ("batch"). Default: yes, except for
        a model fxprune captured with torch.export, whose graph is specialised to its example
        inputs' shapes (a dynamic batch is refused for it).
    parity: run the file in ONNX Runtime (CPU) on the example inputs and compare with torch."""
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    specialised = _specialised_to(model)
    if dynamic_batch is None:
        dynamic_batch = not specialised
    elif dynamic_batch and specialised:
        raise ExportError(f"this model was captured with torch.export and is specialised to {', '.join(specialised)}: "
                          "it cannot be exported with a dynamic batch. Export with dynamic_batch=False (CLI: "
                          "--static-batch), or compile with capture='fx' if the model traces.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(example_inputs)
    net = copy.deepcopy(model).eval()
    if fp16:
        net = net.half()
        inputs = tuple(t.half() if t.is_floating_point() else t for t in inputs)
    names_in = list(input_names or ([f"input{i}" for i in range(len(inputs))] if len(inputs) > 1 else ["input"]))
    with torch.no_grad():
        ref = net(*inputs)
    outs = [t for t in torch.utils._pytree.tree_leaves(ref) if isinstance(t, torch.Tensor)]
    names_out = list(output_names or ([f"output{i}" for i in range(len(outs))] if len(outs) > 1 else ["output"]))
    external = _param_bytes(net) > TWO_GB
    # torch.export specialises axes of size 1: trace a dynamic batch with (at least) two samples
    traced_inputs = tuple(t.expand(2, *t.shape[1:]).contiguous() if dynamic_batch and t.shape[0] == 1 else t
                          for t in inputs)
    t0 = time.perf_counter()
    used, reason = None, None
    if exporter in ("auto", "dynamo"):
        try:
            _export_dynamo(net, traced_inputs, path, opset, dynamic_batch, external, names_in, names_out)
            if dynamic_batch and not _batch_is_symbolic(path):
                raise ExportError("the exported graph fixed the batch axis (a size read in the forward was "
                                  "specialised)")
            used = "dynamo"
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; we record and fall back
            if exporter == "dynamo":
                raise ExportError(f"the dynamo ONNX exporter failed: {type(exc).__name__}: {exc}") from exc
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            warnings.warn(f"dynamo ONNX export failed ({reason}); falling back to the TorchScript exporter",
                          stacklevel=2)
    if used is None:
        try:
            _export_torchscript(net, inputs, path, opset, dynamic_batch, names_in, names_out, len(outs))
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"ONNX export failed with the TorchScript exporter: {type(exc).__name__}: {exc}"
                              + (f" (the dynamo exporter failed first: {reason})" if reason else "")) from exc
        used = "torchscript"
    result = OnnxExport(str(path), used, opset, "float16" if fp16 else "float32", dynamic_batch, external,
                        names_in, names_out, time.perf_counter() - t0, reason)
    if check:
        import onnx

        onnx.checker.check_model(str(path), full_check=False)
    if parity:
        result.parity = ort_parity(path, inputs, outs, fp16=fp16)
        if not result.parity["ok"]:
            raise ExportError(f"ONNX Runtime output differs from torch by {result.parity['max_abs_error']:.3g} "
                              f"(tolerance {result.parity['tolerance']:.3g}) for {path}")
    log.info("exported %s with the %s exporter (opset %d, %s)", path, used, opset, result.dtype)
    return result


def _specialised_to(model: nn.Module) -> list[str]:
    """The input shapes a model fxprune captured with torch.export is valid for ([] otherwise)."""
    meta = getattr(model, "meta", None)
    rep = meta.get("fxprune.report") if isinstance(meta, dict) else None
    return list(getattr(rep, "specialised", None) or []) if getattr(rep, "capture", "fx") == "export" else []


def _batch_is_symbolic(path: Path) -> bool:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return all(i.type.tensor_type.shape.dim[0].dim_param for i in m.graph.input if i.type.tensor_type.shape.dim)


def _export_dynamo(net, inputs, path, opset, dynamic_batch, external, names_in, names_out) -> None:
    import warnings

    dynamic = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic = tuple({0: batch} for _ in inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, str(path), dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
                          external_data=external, input_names=names_in, output_names=names_out, verbose=False)


def _export_torchscript(net, inputs, path, opset, dynamic_batch, names_in, names_out, n_out) -> None:
    import warnings

    axes = None
    if dynamic_batch:
        axes = {n: {0: "batch"} for n in names_in + names_out}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, str(path), dynamo=False, opset_version=min(opset, 20), dynamic_axes=axes,
                          input_names=names_in, output_names=names_out)


def ort_parity(path: str | Path, inputs: Sequence[torch.Tensor], expected: Sequence[torch.Tensor], *,
               fp16: bool = False, providers: Sequence[str] = ("CPUExecutionProvider",)) -> dict[str, Any]:
    """Run the ONNX file in ONNX Runtime and compare every output with ``expected``."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("onnxruntime is not installed: pip install 'fxprune[onnx]' (or onnxruntime)") from exc
    sess = ort.InferenceSession(str(path), providers=list(providers))
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(sess.get_inputs(), inputs)}
    got = sess.run(None, feed)
    err, scale = 0.0, 0.0
    for g, e in zip(got, expected):
        e = e.detach().float().cpu().numpy()
        err = max(err, float(abs(g.astype("float32") - e).max()))
        scale = max(scale, float(abs(e).max()))
    tol = (2e-2 if fp16 else 1e-4) * max(1.0, scale)
    return {"max_abs_error": err, "max_abs_output": scale, "tolerance": tol, "ok": err <= tol,
            "providers": sess.get_providers()}
