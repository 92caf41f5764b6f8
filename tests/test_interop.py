"""The compiled model is an ordinary module: it exports to ONNX and runs in ONNX Runtime."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision

import fxprune
from tests.conftest import randomize

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_onnx_export_matches_onnxruntime(name):
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    model = randomize(torchvision.models.get_model(name, weights=None, **kwargs)).eval()
    x = torch.randn(1, 3, 112, 112)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,)).eval()
    buf = io.BytesIO()
    torch.onnx.export(small, (x,), buf, dynamo=False)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = small(x).numpy()
    assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max())
