"""Long calls name their steps to a listener (the CLI's spinner), and only inside ``listening``."""

import torch
from torch import nn

import fxprune
from fxprune import progress


def test_compile_names_its_stages_in_order_to_a_listener():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    steps: list[str] = []
    with progress.listening(steps.append):
        fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(1, 3, 8, 8),))
    assert steps == ["trace", "analyse", "score", "rewrite", "verify"]
    fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(1, 3, 8, 8),))
    assert len(steps) == 5  # nobody listens outside the block
