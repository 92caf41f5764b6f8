"""Everything of the TensorRT path that runs without TensorRT: profiles, the errors that name
what is missing, and the CLI's message."""

from __future__ import annotations

import pytest

from fxprune.cli import main
from fxprune.errors import ExportError
from fxprune.export import build_engine, profile_shapes, tensorrt_version
from fxprune.export.tensorrt import EngineRunner


def test_profile_varies_only_the_batch_axis():
    (p,) = profile_shapes({"input": (8, 3, 224, 224)}, min_batch=1, max_batch=32)
    assert (p.min, p.opt, p.max) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    (q,) = profile_shapes({"x": (4, 16)})
    assert (q.min, q.opt, q.max) == ((1, 16), (4, 16), (4, 16))
    with pytest.raises(ExportError, match="min .* <= opt .* <= max"):
        profile_shapes({"x": (4, 16)}, min_batch=8)
    with pytest.raises(ExportError, match="concrete shape"):
        profile_shapes({"x": (0, 16)})


@pytest.mark.skipif(tensorrt_version() is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_named(tmp_path):
    with pytest.raises(ExportError, match="TensorRT is not installed.*pypi.nvidia.com"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", input_shapes={"input": (1, 3, 8, 8)})
    with pytest.raises(ExportError, match="TensorRT is not installed"):
        EngineRunner(tmp_path / "m.engine")


@pytest.mark.skipif(tensorrt_version() is not None, reason="TensorRT is installed here")
def test_cli_export_with_trt_names_what_is_missing_after_writing_the_onnx(tmp_path, capsys):
    onnx_path = tmp_path / "r.onnx"
    code = main(["export", "--model", "cifar:resnet20", "--sparsity", "0.5", "--onnx", str(onnx_path),
                 "--trt", str(tmp_path / "r.engine"), "--fp16"])
    err = capsys.readouterr().err
    assert code == 1 and "TensorRT is not installed" in err
    assert onnx_path.exists() and not (tmp_path / "r.engine").exists()


def test_missing_gpu_is_named(monkeypatch):
    import torch

    from fxprune.export.tensorrt import require_cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ExportError, match="no CUDA GPU"):
        require_cuda()
