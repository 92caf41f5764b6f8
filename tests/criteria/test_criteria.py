"""Every criterion on hand-built layers with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune import Plan
from fxprune.compiler import analyse, resolve
from fxprune.criteria import ScoringContext, score
from fxprune.criteria.cpmc import aspects
from fxprune.criteria.magnitude import geometric_median
from tests.conftest import assert_unchanged, snapshot


class TwoConv(nn.Module):
    """conv1 (cin -> 4, producer of the group under test) -> relu -> conv2 (4 -> 3)."""

    def __init__(self, cin: int = 2, k: int = 1, bn: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 4, k, padding=k // 2)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(4, 3, k, padding=k // 2)

    def forward(self, x):
        return self.conv2(F.relu(self.bn(self.conv1(x))))


def context(model, x, options=None, data=None):
    a = analyse(model, x)
    (group,) = [g for g in a.cg.groups() if not g.pinned.all()]
    ctx = ScoringContext(a.cg, parameters=a.parameters, model=model, data=data, gm=a.traced.eval_gm,
                         options=options or {})
    return group, ctx


def kept(model, plan, x, **kw):
    res = resolve(model, plan, x, **kw)
    (choice,) = res.groups.values()
    return choice.keep


X = torch.randn(2, 2, 5, 5)


@pytest.fixture
def two_conv():
    torch.manual_seed(0)
    m = TwoConv().eval()
    with torch.no_grad():
        m.conv1.weight[2] = 0
        m.conv1.bias[2] = 0
        m.conv2.weight[:, 2] = 0
    return m


@pytest.mark.parametrize("criterion", ["l1", "l2", "cpmc"])  # (fpgm ranks by redundancy, not size)
def test_zeroed_channel_ranks_last(two_conv, criterion):
    assert 2 not in kept(two_conv, Plan(sparsity=0.25, criterion=criterion), X)


def test_l1_sums_every_weight_that_disappears_and_reductions(two_conv):
    m = two_conv
    with torch.no_grad():
        m.conv1.weight[2] = 1.0
    g, ctx = context(m, X)
    w1, b1, w2 = m.conv1.weight.detach(), m.conv1.bias.detach(), m.conv2.weight.detach()
    rows = w1.abs().sum((1, 2, 3)).double().numpy()
    bias = b1.abs().double().numpy()
    cols = w2.abs().sum((0, 2, 3)).double().numpy()
    np.testing.assert_allclose(score("l1", g, ctx), rows + bias + cols, rtol=1e-6)
    np.testing.assert_allclose(score("l2", g, ctx), np.sqrt((w1.double() ** 2).sum((1, 2, 3)).numpy()
                                                            + bias ** 2 + (w2.double() ** 2).sum((0, 2, 3)).numpy()))
    _, mean_ctx = context(m, X, {"reduction": "mean"})
    np.testing.assert_allclose(score("l1", g, mean_ctx), (rows + bias + cols) / 3, rtol=1e-6)
    _, max_ctx = context(m, X, {"reduction": "max"})
    np.testing.assert_allclose(score("l1", g, max_ctx), np.maximum(np.maximum(rows, bias), cols), rtol=1e-6)


def test_geometric_median_matches_numerical_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 4))
    x[:5] += 5.0  # skewed: the median is not the mean
    gm = geometric_median(torch.from_numpy(x)).numpy()
    res = scipy.optimize.minimize(lambda y: np.linalg.norm(x - y, axis=1).sum(), x.mean(0), method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    assert np.linalg.norm(x - gm, axis=1).sum() <= res.fun + 1e-6


def test_fpgm_on_filters_with_a_known_geometric_median():
    """Filters (1,0), (-1,0), (0,1), (0,-1), (0,0): the median is the origin, the filter there
    is the most replaceable one."""
    m = TwoConv(cin=2, k=1).eval()
    with torch.no_grad():
        m.conv1.weight.zero_()
        for c, v in enumerate([(1, 0), (-1, 0), (0, 1)]):
            m.conv1.weight[c, :, 0, 0] = torch.tensor(v, dtype=torch.float32)
        m.conv1.bias.zero_()
        m.conv2.weight.fill_(0.5)  # consumer columns all equal: they do not decide
        m.conv2.bias.zero_()
    g, ctx = context(m, X)
    s = score("fpgm", g, ctx)
    assert s.argmin() == 3
    # median of {(1,0), (-1,0), (0,1), (0,0)} is the origin (the unit vectors cancel within 1)
    np.testing.assert_allclose(s, [1.0, 1.0, 1.0, 0.0], atol=1e-6)


def test_bn_scale_ranks_by_gamma():
    torch.manual_seed(0)
    m = TwoConv(bn=True).eval()
    with torch.no_grad():
        m.bn.weight.copy_(torch.tensor([0.5, -2.0, 0.0, 1.0]))
    g, ctx = context(m, X)
    np.testing.assert_allclose(score("bn_scale", g, ctx), [0.5, 2.0, 0.0, 1.0])
    assert kept(m, Plan(sparsity=0.5, criterion="bn_scale"), X) == [1, 3]


def test_taylor_matches_direct_autograd():
    torch.manual_seed(0)
    m = TwoConv(k=3).eval()
    x = torch.randn(6, 2, 5, 5)
    y = torch.randint(0, 3, (6,))
    # the network's output is 3 x 5 x 5; reduce spatially for a classification loss
    loss_fn = lambda out, t: F.cross_entropy(out.mean((2, 3)), t, reduction="sum")  # noqa: E731
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    before = snapshot(m)
    g, ctx = context(m, x, data=batches)
    ctx.loss_fn = loss_fn
    got = score("taylor", g, ctx)
    want = np.zeros(4)
    for xb, yb in batches:
        a = F.relu(m.conv1(xb)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(m.conv2(a), yb), a)
        want += (a * grad).sum((2, 3)).abs().sum(0).double().detach().numpy()
    np.testing.assert_allclose(got, want / 6, rtol=1e-5)
    assert all(p.grad is None for p in m.parameters())
    assert_unchanged(m, before)


def test_taylor_needs_targets_or_a_loss():
    m = TwoConv().eval()
    with pytest.raises(fxprune.PlanError, match="needs a loss"):
        resolve(m, Plan(criterion="taylor"), X, calibration_data=[X])
    with pytest.raises(fxprune.PlanError, match="calibration data"):
        resolve(m, Plan(criterion="taylor"), X)


def test_zero_channel_finds_dead_relu_and_removes_it_exactly():
    torch.manual_seed(0)
    m = TwoConv(k=3).eval()
    with torch.no_grad():
        m.conv1.bias[1] = -1e3  # ReLU never fires for channel 1
    calib = [torch.randn(4, 2, 5, 5) for _ in range(3)]
    g, ctx = context(m, X, data=calib)
    s = score("zero_channel", g, ctx)
    assert s[1] == 0 and (np.delete(s, 1) > 0).all()
    small = fxprune.compile(m, Plan(sparsity=0.25, criterion="zero_channel"), X, calibration_data=calib)
    assert small.conv1.out_channels == 3
    with torch.no_grad():
        for xb in calib:
            assert torch.equal(small(xb), m(xb))


class SE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        gate = torch.sigmoid(self.fc(F.adaptive_avg_pool2d(h, 1)))
        return self.conv2(h * gate)


def test_attention_scores_are_mean_gate_values():
    torch.manual_seed(0)
    m = SE().eval()
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.copy_(torch.tensor([3.0, -4.0, 0.0, 1.0]))
    calib = [torch.randn(3, 2, 6, 6)]
    g, ctx = context(m, X, data=calib)
    np.testing.assert_allclose(score("attention", g, ctx), torch.sigmoid(m.fc.bias).double().detach().numpy(), rtol=1e-6)
    assert kept(m, Plan(sparsity=0.25, criterion="attention"), X, calibration_data=calib) == [0, 2, 3]


def test_cpmc_aspects_on_a_toy_graph_with_hand_computed_costs():
    """conv1: 2 -> 4, 3x3 on 5x5 (padding 1); conv2: 4 -> 3, 3x3. Removing one of conv1's
    channels saves its filter (2*9 MACs per pixel) and conv2's input column (3*9 per pixel)."""
    torch.manual_seed(0)
    m = TwoConv(k=3).eval()
    x = torch.randn(1, 2, 5, 5)
    g, ctx = context(m, x)
    value, cost, size = (d[g.index] for d in aspects([g], ctx))
    np.testing.assert_allclose(cost, np.full(4, 25 * (2 * 9 + 3 * 9)))
    np.testing.assert_allclose(size, np.full(4, 2 * 9 + 1 + 3 * 9))
    np.testing.assert_allclose(value, score("l2", g, ctx))
    # equal costs: min-max normalised costs are all 0, the ranking is the weight value's
    s = score("cpmc", g, ctx)
    v = (value - value.min()) / (value.max() - value.min())
    np.testing.assert_allclose(s, v)


def test_cpmc_prefers_removing_expensive_channels():
    """Two groups of equal weight values; one feeds a wide layer (its channels cost more)."""

    class Fork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 4, 1, bias=False), nn.Conv2d(1, 4, 1, bias=False)
            self.wide, self.narrow = nn.Conv2d(4, 32, 1, bias=False), nn.Conv2d(4, 1, 1, bias=False)

        def forward(self, x):
            return self.wide(self.a(x)).sum(1, keepdim=True) + self.narrow(self.b(x))

    m = Fork().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(0.1)
    res = fxprune.resolve(m, Plan(sparsity=0.25, scope="global", criterion="cpmc",
                                  criterion_options={"weights": [0.0, 1.0, 0.0]}), torch.randn(1, 1, 4, 4))
    widths = {k.split("@")[0]: len(c.keep) for k, c in res.groups.items()}
    assert widths["a.weight"] < widths["b.weight"]


def test_unknown_criterion_option_is_an_error():
    with pytest.raises(fxprune.PlanError, match="no option"):
        Plan(criterion="l1", criterion_options={"weights": [1, 1, 1]})
    with pytest.raises(fxprune.PlanError, match="reduction"):
        Plan(criterion="l1", criterion_options={"reduction": "median"})
