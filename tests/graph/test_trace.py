"""Tracing: leaf policy, automatic leaves for untraceable submodules, train-only branches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxprune
from fxprune.capture.trace import trace
from tests.conftest import assert_unchanged, compile_checked, randomize, snapshot


class DataDependent(nn.Module):
    """Branches on tensor values: FX cannot trace this forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


class WithUntraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 3, padding=1)
        self.odd = DataDependent()
        self.c, self.d = nn.Conv2d(16, 8, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c(self.odd(self.a(x))).sum() + self.d(torch.relu(self.b(x))).sum()


def test_untraceable_submodule_becomes_a_barrier_leaf():
    m = randomize(WithUntraceable())
    small, rep = compile_checked(m, torch.randn(1, 3, 8, 8))
    assert set(rep.auto_leaves) == {"odd"}
    assert "control flow" in rep.auto_leaves["odd"] or "TraceError" in rep.auto_leaves["odd"]
    assert small.a.out_channels == 16 and small.odd.conv.in_channels == 16  # around the barrier: untouched
    assert small.b.out_channels == 8  # elsewhere: pruned
    assert any("odd" in b.op for b in rep.barriers)


def test_untraceable_root_raises_trace_error_naming_the_line():
    m = DataDependent()
    with pytest.raises(fxprune.TraceError) as info:
        fxprune.compile(m, fxprune.Plan(), example_inputs=(torch.randn(1, 16, 4, 4),), capture="fx")
    msg = str(info.value)
    assert "DataDependent.forward" in msg and "x.sum() > 0" in msg and "leaf" in msg
    # the default capture falls back to recording one run; the model keeps its own forward
    small = fxprune.compile(m, fxprune.Plan(), example_inputs=(torch.randn(1, 16, 4, 4),))
    assert fxprune.report(small).capture == "run" and type(small) is DataDependent


def test_leaf_modules_by_name_and_type():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(16, 16, 1)

        def forward(self, x):
            return torch.relu(self.conv(x))

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.blk, self.b = nn.Conv2d(3, 16, 1), Block(), nn.Conv2d(16, 4, 1)

        def forward(self, x):
            return self.b(self.blk(self.a(x)))

    x = torch.randn(1, 3, 4, 4)
    for leaves in (["blk"], [Block]):
        tm = trace(M(), leaf_modules=leaves)
        assert [n.target for n in tm.eval_gm.graph.nodes if n.op == "call_module"] == ["a", "blk", "b"]
    with pytest.raises(fxprune.PlanError, match="nope"):
        fxprune.compile(M(), fxprune.Plan(), example_inputs=(x,), leaf_modules=["nope"])


def test_train_only_branch_is_kept_and_pruned():
    class Aux(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.body = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
            self.head, self.aux = nn.Linear(16, 5), nn.Linear(16 * 4, 5)

        def forward(self, x):
            y = torch.relu(self.stem(x))
            out = self.head(self.body(y).mean((2, 3)))
            if self.training:
                return out, self.aux(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 2), 1))
            return out

    m = randomize(Aux())
    small, rep = compile_checked(m, torch.randn(2, 3, 8, 8))
    assert rep.train_graph and small.train_graph is not None
    assert small.aux.in_features == small.stem.out_channels * 4 < 64
    small.train()
    out, aux = small(torch.randn(2, 3, 8, 8))
    assert out.shape == aux.shape == (2, 5)
    assert m.training is False  # the caller's flags are restored after train-mode tracing


def test_caller_flags_and_state_are_restored_after_compile():
    m = randomize(WithUntraceable())
    m.train()
    m.odd.eval()
    before = snapshot(m)
    fxprune.compile(m, fxprune.Plan(), example_inputs=(torch.randn(1, 3, 8, 8),))
    assert m.training and not m.odd.training and m.a.training
    assert_unchanged(m, before)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "googlenet", "vit_b_32"])
def test_meta_and_real_shape_propagation_agree(name):
    import torchvision

    from fxprune.capture.meta import map_meta
    from fxprune.capture.trace import propagate_shapes

    kwargs = {"init_weights": True} if name == "googlenet" else {}
    tm = trace(torchvision.models.get_model(name, weights=None, **kwargs))
    x = torch.randn(1, 3, 224, 224)
    shapes = {}
    for mode in ("real", "meta"):
        for gm in tm.graph_modules:
            propagate_shapes(gm, (x,), mode=mode)
        shapes[mode] = [(n.name, map_meta(n.meta.get("tensor_meta"), lambda m: (tuple(m.shape), m.dtype)))
                        for gm in tm.graph_modules for n in gm.graph.nodes]
    assert shapes["real"] == shapes["meta"]
