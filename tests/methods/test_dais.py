"""DAIS: expected MACs exact for binary indicators, the search reaches its budget, projection,
the bi-level split, batch-norm recalibration."""

from __future__ import annotations

import pytest
import torch
import torchvision

import fxprune
from fxprune.data import digits_loaders
from fxprune.errors import PlanError
from fxprune.methods import DAIS, RelaxedGatedModel
from fxprune.models.cifar import densenet40, resnet20
from fxprune.train import accuracy, fit, recalibrate_bn
from tests.conftest import assert_unchanged, randomize, snapshot

CASES = {
    "resnet20": (resnet20, (2, 3, 32, 32)),
    "densenet40": (densenet40, (2, 3, 32, 32)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), (2, 3, 64, 64)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_expected_macs_equal_the_finalized_models_macs_for_binary_indicators(name):
    make, shape = CASES[name]
    x = torch.randn(*shape)
    g = RelaxedGatedModel(randomize(make()).eval(), x)
    with torch.no_grad():
        g.alpha.copy_(torch.randn(g.n_slots) + 0.3)
        g.temperature.fill_(1e-6)  # sigmoid(alpha / T) is exactly 0 or 1 in float32
    v = g.gate_vector()
    assert set(v.unique().tolist()) <= {0.0, 1.0}
    for i in range(len(g.groups)):  # every group keeps a channel, as the hard model must
        sl = g.group_slice(i)
        if not v[sl].any():
            with torch.no_grad():
                g.alpha[sl.start] = 1.0
    expected = float(g.expected_macs().detach())
    small = g.finalize()
    rep = fxprune.report(small)
    assert expected == pytest.approx(rep.macs_after, rel=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), g.eval()(x), rtol=1e-4, atol=1e-5)


def test_expected_macs_is_differentiable_in_the_indicators():
    g = RelaxedGatedModel(resnet20(), torch.randn(2, 3, 32, 32))
    g.expected_macs().backward()
    assert g.alpha.grad is not None and (g.alpha.grad[~g.pinned] > 0).all()


@pytest.fixture(scope="module")
def digits():
    return digits_loaders(64, seed=0)


@pytest.mark.slow  # 60 s: trains; benchmarks/training_methods.py runs the same search (docs/benchmarks.md)
def test_search_reaches_the_budget_within_two_percent_without_projection(digits):
    train, val, test = digits
    torch.manual_seed(0)
    model = resnet20()
    fit(model, train, epochs=3)
    before = snapshot(model)
    d = DAIS(model, torch.randn(2, 3, 32, 32), flops=0.5, val_data=val, search_epochs=3, steps_per_epoch=len(train))
    fit(d.model, train, epochs=3, lr=0.02, callbacks=[d], parameters=d.weight_parameters())
    assert float(d.model.temperature) == pytest.approx(d.t_end)
    info = d.binarize()
    assert not info["projected"], info
    assert abs(info["macs_ratio"] - 0.5) <= 0.02 * 0.5
    small = d.finalize(calibration_data=train)
    assert fxprune.report(small).macs_ratio == pytest.approx(info["macs_ratio"])
    assert accuracy(small, test) > 0.5
    assert_unchanged(model, before)


def test_a_missed_budget_is_projected_onto_it():
    x = torch.randn(2, 3, 32, 32)
    d = DAIS(resnet20(), x, flops=0.3, val_data=[(x, torch.tensor([0, 1]))], search_epochs=1, steps_per_epoch=1)
    info = d.binarize()  # no search: every indicator open, 100% of the MACs
    assert info["projected"] and info["binary_macs_ratio"] == pytest.approx(1.0)
    assert 0.3 * 0.98 <= info["macs_ratio"] <= 0.3


def test_indicator_step_moves_only_the_indicators_and_the_weight_optimizer_never_sees_them():
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    d = DAIS(resnet20(), x[:2], flops=0.5, val_data=[(x, y)], search_epochs=1, steps_per_epoch=5)
    assert all(p is not d.model.alpha for p in d.weight_parameters())
    w = [p.detach().clone() for p in d.weight_parameters()]
    a = d.model.alpha.detach().clone()
    d.after_step()
    assert not torch.equal(a, d.model.alpha.detach())
    assert all(torch.equal(p0, p) for p0, p in zip(w, d.weight_parameters()))
    assert all(p.grad is None for p in d.weight_parameters())
    assert float(d.model.temperature) < d.t_start


def test_regulariser_pushes_into_the_band_from_both_sides():
    d = DAIS(resnet20(), torch.randn(2, 3, 32, 32), flops=0.5, val_data=[], search_epochs=1, steps_per_epoch=1,
             l1_weight=0.0)
    for init, sign in ((3.0, 1.0), (-0.3, -1.0)):  # above the band: grad > 0 (close); below: grad < 0 (open)
        with torch.no_grad():
            d.model.alpha.fill_(init)
        d.model.alpha.grad = None
        d.regulariser().backward()
        assert (sign * d.model.alpha.grad[~d.model.pinned] > 0).all()


def test_recalibrate_bn_restores_statistics():
    model = resnet20().eval()
    x = torch.randn(16, 3, 32, 32) * 3 + 1
    recalibrate_bn(model, [x[:8], (x[8:], None)])
    bn = model.bn1
    with torch.no_grad():
        h = model.conv1(x)
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert bn.momentum == 0.1 and not model.training


def test_bad_configuration_is_named():
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(PlanError, match="flops"):
        DAIS(resnet20(), x, flops=0.0, val_data=[], search_epochs=1, steps_per_epoch=1)
    with pytest.raises(PlanError, match="search_epochs"):
        DAIS(resnet20(), x, flops=0.5, val_data=[], search_epochs=0, steps_per_epoch=1)
    d = DAIS(resnet20(), x, flops=0.5, val_data=[], search_epochs=1, steps_per_epoch=1)
    with pytest.raises(PlanError, match="no batches"):
        d.after_step()
