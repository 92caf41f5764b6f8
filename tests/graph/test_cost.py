"""The analytic MAC count against torch.utils.flop_counter.FlopCounterMode (FLOPs = 2 x MACs)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fxprune
from tests.conftest import randomize
from tests.graph.test_rules import Attention


def measured(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121", "googlenet",
                                  "shufflenet_v2_x0_5", "convnext_tiny", "swin_t"])
def test_dense_and_pruned_macs_match_flop_counter(name):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    m = randomize(torchvision.models.get_model(name, weights=None, **kwargs)).eval()
    x = torch.randn(1, 3, 224, 224)
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.macs_before == measured(m, x)
    assert rep.macs_after == measured(small, x)
    assert rep.macs_after < rep.macs_before


def test_attention_macs_by_hand():
    """FlopCounterMode does not count the CPU attention kernels, so check the formulas by hand."""
    b, n, c, h = 2, 5, 16, 2
    m = randomize(Attention(dim=c, heads=h, sdpa=True)).eval()
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.0), example_inputs=(torch.randn(b, n, c),))
    linears = 4 * b * n * c * c + b * n * c * c  # q, k, v, o twice
    attention = 2 * b * h * n * n * (c // h)
    assert fxprune.report(small).macs_before == linears + attention

    mha = nn.MultiheadAttention(c, h, batch_first=True)
    wrap = nn.Sequential(nn.Linear(c, c))
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha, self.fc = mha, wrap

        def forward(self, x):
            return self.fc(self.mha(x, x, x, need_weights=False)[0])

    small = fxprune.compile(M().eval(), fxprune.Plan(sparsity=0.0), example_inputs=(torch.randn(b, n, c),))
    assert fxprune.report(small).macs_before == 4 * b * n * c * c + 2 * b * n * n * c + b * n * c * c
