"""Verification cannot be fooled: bad example inputs are refused, a second seeded random input is
checked, and train-mode graphs with random ops compare like with like."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import fxprune
from fxprune.graph.rules import REGISTRY, OpRegistry
from fxprune.graph.rules.pointwise import unary
from fxprune.graph.rules.registry import OpRule
from tests.conftest import randomize


def _net():
    return randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 4, 1))).eval()


@pytest.mark.parametrize("x, what", [
    (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    (torch.tensor([[[[float("inf")]]]]).expand(1, 3, 8, 8).clone(), "NaN or infinite"),
    (torch.randn(0, 3, 8, 8), "empty"),
    (torch.randn(1, 3, 8, 8, device="meta"), "meta"),
])
def test_bad_example_inputs_are_refused(x, what):
    with pytest.raises(fxprune.PlanError, match=what):
        fxprune.compile(_net(), fxprune.Plan(sparsity=0.5), example_inputs=(x,))


class Flip(nn.Module):
    """Reverses the channel order: NOT channel-aligned, whatever a rule claims."""

    def forward(self, x):
        return x.flip(1)


def test_second_random_input_catches_what_an_all_zero_example_hides():
    reg = OpRegistry()
    reg.modules, reg.functions, reg.methods = dict(REGISTRY.modules), dict(REGISTRY.functions), dict(REGISTRY.methods)
    reg.register(OpRule("wrong_passthrough", unary.propagate), modules=[Flip])  # a deliberately wrong rule
    m = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), Flip(), nn.Conv2d(8, 4, 1))).eval()
    with pytest.raises(fxprune.VerificationError, match="seeded random input"):
        fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(torch.zeros(2, 3, 8, 8),), registry=reg)


class FunctionalDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.b(F.dropout(torch.relu(self.a(x)), p=0.5, training=self.training))


class StochasticDepth(nn.Module):
    """Residual blocks with per-sample stochastic depth (torchvision's op and timm's DropPath)."""

    def __init__(self, drop_path: nn.Module | None = None):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.drop = drop_path
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = self.stem(x)
        r = self.body(y)
        if self.drop is not None:
            r = self.drop(r)
        else:
            r = torchvision.ops.stochastic_depth(r, 0.5, "row", training=self.training)
        return self.head(torch.relu(y + r))


def _timm_drop_path():
    timm = pytest.importorskip("timm")
    return timm.layers.DropPath(0.5)


@pytest.mark.parametrize("make", [FunctionalDropout, StochasticDepth, lambda: StochasticDepth(_timm_drop_path())],
                         ids=["functional_dropout", "torchvision_stochastic_depth", "timm_drop_path"])
def test_train_graph_with_random_ops_verifies(make):
    m = randomize(make()).eval()
    x = torch.randn(4, 3, 8, 8)
    rng = torch.get_rng_state()
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.train_graph and rep.params_after < rep.params_before
    assert rep.max_abs_error <= 1e-4 * max(rep.max_abs_reference, 1.0)
    assert torch.equal(torch.get_rng_state(), rng), "verification must not consume the caller's RNG stream"
