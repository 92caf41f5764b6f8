"""Backbones of torchvision dense-prediction models compile and verify with their dict outputs."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import detection, segmentation

from tests.conftest import compile_checked, randomize

MODELS = {
    "fcn_resnet50": lambda: segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True),
    "deeplabv3_mobilenet_v3_large": lambda: segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=True),
    "lraspp_mobilenet_v3_large": lambda: segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None),
    "fasterrcnn_mobilenet_v3_large_fpn.backbone": lambda: detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None).backbone,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_dense_prediction_backbones(name):
    torch.manual_seed(0)
    model = randomize(MODELS[name]())
    x = torch.randn(1, 3, 160, 160)
    small, rep = compile_checked(model, x)
    out = small(x)
    assert isinstance(out, dict) and set(out) == set(model(x).keys())
    assert not rep.barriers, rep.barriers  # the FPN / head resizes read spatial sizes only
    small.train()
    small(torch.randn(2, 3, 160, 160))
