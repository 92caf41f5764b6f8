"""GHFP and its two ends: schedule, hard set monotone and frozen, soft channels still trained,
finalize exact, the caller's model untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fxprune.errors import PlanError
import fxprune
from fxprune.methods import GHFP, hfp, sfp
from fxprune.models.cifar import resnet20
from tests.conftest import assert_unchanged, randomize, snapshot

X = torch.randn(8, 3, 32, 32)
Y = torch.randint(0, 10, (8,))


def _steps(meth, opt, n=2):
    """n optimizer steps on random data through the method's hooks (as any loop would)."""
    meth.model.train()
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(meth.model(X), Y).backward()
        meth.before_step()
        opt.step()
        meth.after_step()


def _run(meth, epochs, steps=1):
    opt = torch.optim.SGD(meth.model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    meth.attach(opt)
    hard_sets = []
    for e in range(epochs):
        meth.on_epoch_start(e)
        hard_sets.append(meth.model.hard.clone())
        _steps(meth, opt, steps)
    return opt, hard_sets


def test_schedule_values():
    m = GHFP(resnet20(), X[:2], epochs=6, flops=0.5, ramp_epochs=3)
    assert [round(m.progress(e), 3) for e in range(5)] == [0.333, 0.667, 1.0, 1.0, 1.0]
    budgets = [m.plan_at(e).flops for e in range(4)]
    assert budgets[0] > budgets[1] > budgets[2] == budgets[3] == pytest.approx(0.5)
    assert budgets[0] == pytest.approx(1 - 0.5 * (1 - (1 - 1 / 3) ** 3))
    assert [m.lam(e) for e in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert sfp(resnet20(), X[:2], epochs=3, flops=0.5).lam(2) == 0.0
    assert hfp(resnet20(), X[:2], epochs=3, flops=0.5).lam(0) == 1.0


def test_ghfp_hard_set_only_grows_and_hard_channels_never_change():
    torch.manual_seed(0)
    model = randomize(resnet20())
    before = snapshot(model)
    m = GHFP(model, X[:2], epochs=4, flops=0.5, ramp_epochs=3)
    opt, hard_sets = _run(m, 4, steps=2)
    for a, b in zip(hard_sets, hard_sets[1:]):
        assert bool((a <= b).all()), "a hard channel became soft again"
    assert 0 < int(hard_sets[0].sum()) < int(hard_sets[-1].sum())
    assert torch.equal(m.model.hard, m.model.selected)  # ramp over: everything selected is hard
    # hard channels: gate 0, every weight holding them zero, and so their grads and momentum
    assert bool((m.model.mask[m.model.hard] == 0).all())
    n = 0
    for p, axis, pos in m.model.entries.select(m.model.hard):
        assert p.index_select(axis, pos).abs().max() == 0
        assert opt.state[p]["momentum_buffer"].index_select(axis, pos).abs().max() == 0
        n += 1
    assert n > 0
    # one more backward: before_step zeroes the gradient of hard channels
    F.cross_entropy(m.model(X), Y).backward()
    m.before_step()
    for p, axis, pos in m.model.entries.select(m.model.hard):
        assert p.grad.index_select(axis, pos).abs().max() == 0
    assert_unchanged(model, before)


def test_hfp_hardens_everything_selected_at_once():
    m = hfp(randomize(resnet20()), X[:2], epochs=3, flops=0.5)
    _run(m, 2)
    assert torch.equal(m.model.hard, m.model.selected) and m.model.hard.any()


def test_sfp_zeroes_soft_filters_which_keep_training_and_never_hardens():
    m = sfp(randomize(resnet20()), X[:2], epochs=3, flops=0.5)
    opt = torch.optim.SGD(m.model.parameters(), lr=0.05, momentum=0.9)
    m.attach(opt)
    m.on_epoch_start(0)
    soft = m.model.selected & ~m.model.hard
    assert not m.model.hard.any() and soft.any()
    assert bool((m.model.mask == 1).all())  # soft channels stay in the forward
    filters = list(m.model.entries.select(soft, filters_only=True))
    assert filters and all(p.index_select(a, pos).abs().max() == 0 for p, a, pos in filters)
    _steps(m, opt, 1)
    assert any(p.index_select(a, pos).abs().max() > 0 for p, a, pos in filters), "soft filters must still be updated"
    # non-filter weights of soft channels (consumer columns) are left alone
    others = [e for e in m.model.entries.select(soft) if not any(e[0] is f[0] and e[1] == f[1] for f in filters)]
    assert others and all(p.index_select(a, pos).abs().max() > 0 for p, a, pos in others)


def test_soft_decay_scales_soft_filters():
    m = GHFP(randomize(resnet20()), X[:2], epochs=4, flops=0.5, hardness="soft", soft_decay=0.5, ramp_epochs=4)
    w = {id(p): p.detach().clone() for p in m.model.parameters()}
    m.on_epoch_start(0)
    soft = m.model.selected & ~m.model.hard
    for p, axis, pos in m.model.entries.select(soft, filters_only=True):
        torch.testing.assert_close(p.index_select(axis, pos), w[id(p)].index_select(axis, pos) * 0.5 * (1 - 0.25))


@pytest.mark.parametrize("hardness", ["soft", "linear", "hard"])
def test_finalize_is_the_masked_model_and_meets_the_budget(hardness):
    model = randomize(resnet20()).eval()
    m = GHFP(model, X[:2], epochs=3, flops=0.5, hardness=hardness)
    _run(m, 3)
    small = m.finalize().eval()  # the small model keeps the training copy's mode
    m.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(small(X), m.model(X), rtol=1e-4, atol=1e-5)
    rep = fxprune.report(small)
    assert 0.47 <= rep.macs_ratio <= 0.5
    assert rep.macs_ratio == pytest.approx(m.model.macs_ratio())


def test_bad_configuration_is_named():
    with pytest.raises(PlanError, match="hardness"):
        GHFP(resnet20(), X[:2], epochs=3, flops=0.5, hardness="medium")
    with pytest.raises(PlanError, match="exactly one target"):
        GHFP(resnet20(), X[:2], epochs=3)
    with pytest.raises(PlanError, match="flops"):
        GHFP(resnet20(), X[:2], epochs=3, flops=1.5)
