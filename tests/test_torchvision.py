"""The models the core compiler must handle: compiled at 50%, verified (random weights, random BN
statistics), runnable in train and eval mode, smaller than the dense model."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tests.conftest import compile_checked, randomize

MODELS = ["resnet18", "resnet50", "vgg16_bn", "densenet121", "mobilenet_v3_large", "googlenet",
          "shufflenet_v2_x1_0", "efficientnet_b0", "convnext_tiny", "vit_b_16"]


@pytest.mark.parametrize("name", MODELS)
def test_compiles_verifies_and_runs_in_both_modes(name):
    torch.manual_seed(0)
    kwargs = {"aux_logits": True, "init_weights": True} if name == "googlenet" else {}
    model = randomize(torchvision.models.get_model(name, weights=None, **kwargs))
    x = torch.randn(1, 3, 224, 224)
    small, rep = compile_checked(model, x)
    assert rep.max_abs_error <= 1e-5 + 1e-4 * float(model(x).detach().abs().max())
    assert rep.macs_after < 0.8 * rep.macs_before
    small.train()
    out = small(torch.randn(2, 3, 224, 224))
    if name == "googlenet":
        assert rep.train_graph and len(out) == 3 and out.aux_logits1.shape == (2, 1000)
    small.eval()
    with torch.no_grad():
        assert small(x).shape == (1, 1000)
