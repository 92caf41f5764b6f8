"""ONNX export of pruned models: every architecture family of the core tests passes ORT parity,
with a dynamic batch axis; FP16 export; exporter fallback recorded; bad input named."""

from __future__ import annotations

import onnx
import pytest
import torch
import torchvision
from torch import nn

import fxprune
from fxprune.errors import ExportError
from fxprune.export import export_onnx
from fxprune.models.cifar import densenet40
from tests.conftest import assert_unchanged, randomize, snapshot

ort = pytest.importorskip("onnxruntime")

FAMILIES = {  # residual, depthwise + SE, concat, channel shuffle, inception branches, attention
    "resnet18": (lambda: torchvision.models.resnet18(), (1, 3, 64, 64)),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(), (1, 3, 64, 64)),
    "densenet40": (densenet40, (1, 3, 32, 32)),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(), (1, 3, 64, 64)),
    "googlenet": (lambda: torchvision.models.googlenet(init_weights=True, aux_logits=False), (1, 3, 64, 64)),
    "vit": (lambda: torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                         hidden_dim=64, mlp_dim=128), (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_pruned_models_export_and_match_onnxruntime_at_other_batches(name, tmp_path):
    make, shape = FAMILIES[name]
    model = randomize(make()).eval()
    x = torch.randn(*shape)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,)).eval()
    before = snapshot(small)
    exp = export_onnx(small, (x,), tmp_path / f"{name}.onnx")
    assert_unchanged(small, before)
    assert exp.parity["ok"] and exp.parity["providers"] == ["CPUExecutionProvider"]
    assert exp.exporter in ("dynamo", "torchscript") and not exp.external_data
    m = onnx.load(exp.path)
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert not list(tmp_path.glob("*.data"))  # one file
    sess = ort.InferenceSession(exp.path, providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, *shape[1:])
    got = sess.run(None, {sess.get_inputs()[0].name: x3.numpy()})[0]
    with torch.no_grad():
        want = small(x3).numpy()
    assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max())


def test_fp16_export_has_half_weights_and_io_and_close_outputs(tmp_path):
    model = randomize(torchvision.models.resnet18()).eval()
    x = torch.randn(1, 3, 64, 64)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,)).eval()
    exp = export_onnx(small, (x,), tmp_path / "h.onnx", fp16=True)
    m = onnx.load(exp.path)
    assert exp.dtype == "float16" and exp.parity["ok"]
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    floats = [i for i in m.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(i.data_type == onnx.TensorProto.FLOAT16 for i in floats if len(i.dims) > 1)
    assert next(small.parameters()).dtype == torch.float32  # the caller's model stays fp32


def test_dynamo_failure_falls_back_or_is_named(tmp_path):
    class Both(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent branch: dynamo export refuses, TorchScript traces one path
                return x * 2
            return x * 3

    exp = export_onnx(Both(), (torch.ones(1, 4),), tmp_path / "b.onnx", exporter="auto")
    assert exp.exporter == "torchscript" and exp.fallback_reason
    with pytest.raises(ExportError, match="dynamo"):
        export_onnx(Both(), (torch.ones(1, 4),), tmp_path / "c.onnx", exporter="dynamo")
    with pytest.raises(ExportError, match="exporter must be one of"):
        export_onnx(Both(), (torch.ones(1, 4),), tmp_path / "d.onnx", exporter="magic")
    with pytest.raises(ExportError, match="example_inputs"):
        export_onnx(Both(), ("text",), tmp_path / "e.onnx")
