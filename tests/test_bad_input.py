"""Bad input gets a named fxprune error (or a report that says so), never a silent wrong model;
the caller's model is bit-identical afterwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxprune
from tests.conftest import assert_unchanged, randomize, snapshot


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.b(torch.relu(self.bn(self.a(x))))


X = torch.randn(1, 3, 8, 8)


def check(model, exc, match, **kwargs):
    before = snapshot(model)
    with pytest.raises(exc, match=match):
        fxprune.compile(model, kwargs.pop("plan", fxprune.Plan()), example_inputs=kwargs.pop("inputs", (X,)), **kwargs)
    assert_unchanged(model, before)


def test_unknown_names_in_ignore_and_overrides():
    m = randomize(Small()).eval()
    check(m, fxprune.PlanError, "layer9", plan=fxprune.Plan(ignore=["layer9"]))
    check(m, fxprune.PlanError, "bn1.*Did you mean.*bn", plan=fxprune.Plan(overrides={"bn1": 0.2}))


def test_sparsity_outside_unit_interval():
    for s in (1.0, 1.5, -0.2):
        with pytest.raises(fxprune.PlanError, match="sparsity"):
            fxprune.Plan(sparsity=s)


def test_example_inputs_of_the_wrong_shape():
    m = randomize(Small()).eval()
    check(m, fxprune.TraceError, r"node `a`.*example_inputs had shapes \[\(1, 4, 8, 8\)\]",
          inputs=(torch.randn(1, 4, 8, 8),))
    check(m, fxprune.PlanError, "example_inputs are required", inputs=None)


def test_untraceable_model():
    class Loop(nn.Module):
        def forward(self, x):
            for row in x:  # iterating a tensor cannot be traced
                x = x + row
            return x

    with pytest.raises(fxprune.TraceError, match="Loop.forward"):
        fxprune.compile(Loop(), fxprune.Plan(), example_inputs=(X,), capture="fx")
    # the default capture unrolls the loop with torch.export instead, for this input shape only
    small = fxprune.compile(Loop(), fxprune.Plan(), example_inputs=(X,))
    assert fxprune.report(small).capture == "export"
    assert torch.allclose(small(X), Loop()(X))


def test_model_with_no_prunable_group_is_reported():
    m = nn.Sequential(nn.Conv2d(3, 4, 1))
    before = snapshot(m)
    small = fxprune.compile(m, fxprune.Plan(), example_inputs=(X,))
    rep = fxprune.report(small)
    assert rep.prunable_groups == 0 and any("no prunable" in n for n in rep.notes)
    assert rep.params_after == rep.params_before
    assert_unchanged(m, before)


def test_nan_weights():
    m = randomize(Small()).eval()
    with torch.no_grad():
        m.bn.running_var[3] = float("nan")
    check(m, fxprune.ModelError, "bn.running_var")


def test_not_a_module_and_not_a_plan():
    with pytest.raises(fxprune.PlanError):
        fxprune.compile(lambda x: x, fxprune.Plan(), example_inputs=(X,))
    with pytest.raises(fxprune.PlanError):
        fxprune.compile(Small(), {"sparsity": 0.5}, example_inputs=(X,))


def test_a_wrong_rule_is_caught_by_verification(monkeypatch):
    """Break the batch-norm rule (forget to tie its parameters): verification must name a node."""
    from fxprune.graph.rules import layers

    original = layers.batch_norm.propagate

    def broken(ctx):
        out = original(ctx)
        return tuple(f.__class__(f.axes, ctx.fresh(len(f.ids))) for f in out)  # new ids: untied

    monkeypatch.setattr(layers.batch_norm, "propagate", broken)
    m = randomize(Small()).eval()
    with pytest.raises((fxprune.VerificationError, RuntimeError)) as info:
        fxprune.compile(m, fxprune.Plan(), example_inputs=(X,))
    if isinstance(info.value, fxprune.VerificationError):
        assert info.value.node is not None


def test_verification_error_names_the_first_diverging_node(monkeypatch):
    """A rewrite that keeps the right shapes but the wrong weights is reported at its node."""
    from fxprune.passes import rewrite

    original = rewrite._slice_tensors

    def shuffled(cg, id_kept):
        out = original(cg, id_kept)
        w = out["b.weight"]
        with torch.no_grad():
            w.copy_(w.flip(1))  # consumer columns in the wrong order
        return out

    monkeypatch.setattr(rewrite, "_slice_tensors", shuffled)
    m = randomize(Small()).eval()
    with pytest.raises(fxprune.VerificationError) as info:
        fxprune.compile(m, fxprune.Plan(), example_inputs=(X,))
    assert info.value.node == "b" and "`b`" in str(info.value)


def test_low_precision_models_verify_with_dtype_tolerances():
    import torchvision

    for dtype in (torch.float16, torch.bfloat16):
        m = randomize(torchvision.models.resnet18()).to(dtype).eval()
        before = snapshot(m)
        small = fxprune.compile(m, fxprune.Plan(), example_inputs=(torch.randn(1, 3, 64, 64, dtype=dtype),))
        assert small.conv1.weight.dtype == dtype and fxprune.report(small).max_abs_error is not None
        assert_unchanged(m, before)


def test_compile_with_an_analysis_of_another_model_is_refused():
    import torchvision

    from fxprune.compiler import analyse
    from fxprune.errors import PlanError

    a, b = torchvision.models.resnet18().eval(), torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    an = analyse(a, x)
    with pytest.raises(PlanError, match="made for another model"):
        fxprune.compile(b, fxprune.Plan(sparsity=0.5), analysis=an)
    small = fxprune.compile(a, fxprune.Plan(sparsity=0.5), analysis=an)  # no second trace
    assert fxprune.report(small).max_abs_error is not None


def _small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()


def test_ignore_entries_must_be_names():
    with pytest.raises(fxprune.PlanError, match="ignore takes module names"):
        fxprune.Plan(sparsity=0.5, ignore=[None])


def test_too_many_example_inputs():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(fxprune.PlanError, match="2 example inputs given"):
        fxprune.compile(_small_net(), fxprune.Plan(sparsity=0.5), example_inputs=(x, x))


def test_model_on_the_meta_device():
    with torch.device("meta"):
        m = _small_net()
    with pytest.raises(fxprune.ModelError, match="meta device"):
        fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(1, 3, 8, 8),))


def test_taylor_calibration_batches_of_the_wrong_shape():
    with pytest.raises(fxprune.PlanError, match="calibration batch 0"):
        fxprune.compile(_small_net(), fxprune.Plan(sparsity=0.5, criterion="taylor"),
                        example_inputs=(torch.randn(1, 3, 8, 8),),
                        calibration_data=[(torch.randn(4, 5, 8, 8), torch.randn(4, 2, 8, 8))])
