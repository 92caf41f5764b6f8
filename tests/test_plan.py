"""Plans, resolutions and their JSON round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import fxprune
from fxprune import Plan, Resolution
from tests.conftest import randomize

X = torch.randn(1, 3, 64, 64)


def resnet(seed=0):
    torch.manual_seed(seed)
    return randomize(torchvision.models.resnet18()).eval()


def widths(small):
    return {g.key: g.after for g in fxprune.report(small).groups}


def test_plan_json_round_trip(tmp_path):
    plan = Plan(sparsity=0.3, criterion="l2", scope="global", round_to=8, min_channels=4,
                ignore=["layer1"], overrides={"layer2.0.conv1": 0.7}, seed=3)
    assert Plan.from_json(plan.to_json()) == plan
    plan.to_json(tmp_path / "p.json")
    assert Plan.from_json(tmp_path / "p.json") == plan


@pytest.mark.parametrize("bad", [dict(sparsity=1.0), dict(sparsity=-0.1), dict(sparsity=float("nan")),
                                 dict(scope="layer"), dict(round_to=0), dict(min_channels=0),
                                 dict(criterion="nope"), dict(overrides={"x": 1.5}), dict(ignore="layer1")])
def test_invalid_plans_raise_plan_error(bad):
    with pytest.raises(fxprune.PlanError):
        Plan(**bad)


def test_saved_resolution_gives_identical_model_on_a_fresh_copy(tmp_path):
    small = fxprune.compile(resnet(), Plan(sparsity=0.4, criterion="l2"), example_inputs=(X,))
    res = small.meta["fxprune.resolution"]
    res.to_json(tmp_path / "r.json")
    fresh = resnet()  # same seed, a different object
    again = fxprune.compile(fresh, resolution=Resolution.from_json(tmp_path / "r.json"), example_inputs=(X,))
    assert small.code == again.code
    for (k1, v1), (k2, v2) in zip(small.state_dict().items(), again.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_resolution_for_another_model_is_rejected():
    small = fxprune.compile(resnet(), Plan(), example_inputs=(X,))
    res = small.meta["fxprune.resolution"]
    other = torchvision.models.resnet34().eval()
    with pytest.raises(fxprune.ResolutionError):
        fxprune.compile(other, resolution=res, example_inputs=(X,))


def test_local_sparsity_round_to_and_min_channels():
    small = fxprune.compile(resnet(), Plan(sparsity=0.7, round_to=8, min_channels=24), example_inputs=(X,))
    for g in fxprune.report(small).groups:
        if g.before > g.pinned:
            assert g.after % 8 == 0 or g.after == g.before
            assert g.after >= min(24, g.before)
            assert g.after >= g.before - int(0.7 * g.before)


def test_global_scope_removes_the_requested_fraction_overall():
    small = fxprune.compile(resnet(), Plan(sparsity=0.5, scope="global"), example_inputs=(X,))
    groups = [g for g in fxprune.report(small).groups if g.before > g.pinned]
    total, kept = sum(g.before for g in groups), sum(g.after for g in groups)
    assert abs((total - kept) - total // 2) <= 1
    assert len({round(g.after / g.before, 2) for g in groups}) > 1  # layers pruned unevenly


def test_ignore_and_overrides_by_module_name():
    plan = Plan(sparsity=0.5, ignore=["layer1.0.conv1", "layer4"], overrides={"layer2.1.conv1": 0.25})
    small = fxprune.compile(resnet(), plan, example_inputs=(X,))
    assert small.layer1[0].conv1.out_channels == 64
    assert small.layer4[1].conv1.out_channels == 512 and small.layer4[1].conv2.in_channels == 512
    assert small.layer2[1].conv1.out_channels == 128 - 32
    assert small.layer3[0].conv1.out_channels == 128


def test_criteria_pick_the_largest_filters():
    model = resnet()
    with torch.no_grad():
        model.layer1[0].conv1.weight[:5] *= 100  # make five filters clearly the most important
    for crit in ("l1", "l2"):
        res = fxprune.resolve(model, Plan(sparsity=0.9, criterion=crit), example_inputs=(X,))
        assert set(range(5)) <= set(res.groups["layer1.0.conv1.weight@0"].keep)
    r1 = fxprune.resolve(model, Plan(criterion="random", seed=1), example_inputs=(X,))
    r2 = fxprune.resolve(model, Plan(criterion="random", seed=1), example_inputs=(X,))
    r3 = fxprune.resolve(model, Plan(criterion="random", seed=2), example_inputs=(X,))
    assert r1.to_dict() == r2.to_dict() != r3.to_dict()


def test_scores_include_consumer_columns():
    """A filter whose output is never read downstream is worthless even with large weights."""
    from fxprune.criteria import ScoringContext, score

    model = resnet()
    with torch.no_grad():
        model.layer1[0].conv1.weight[3] *= 50        # big producer row
        model.layer1[0].conv2.weight[:, 3] = 0       # but the consumer ignores it
        model.layer1[0].bn1.weight[3] = 0
    a = fxprune.analyse(model, X)
    g = next(g for g in a.cg.groups() if g.key == "layer1.0.conv1.weight@0")
    s = score("l1", g, ScoringContext(a.cg, parameters=a.parameters))
    w = model.layer1[0]
    expected = (w.conv1.weight.abs().sum((1, 2, 3)) + w.bn1.weight.abs() + w.bn1.bias.abs()
                + w.conv2.weight.abs().sum((0, 2, 3))).detach().double().numpy()
    assert np.allclose(s, expected)
