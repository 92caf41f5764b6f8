"""Latency tables over many widths, the backend's measured step, and plans that land where asked,
on toy backends whose latency function is known (deterministic), plus one real ONNX Runtime table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import fxprune
from fxprune.errors import PlanError
from fxprune.graph import latency as lat


def net(c: int = 64, depth: int = 3) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers).eval()


def _dims(m):
    return (m.out_features, m.in_features) if isinstance(m, nn.Linear) else (m.out_channels, m.in_channels)


class Staircase:
    """Latency of a layer: 0.01 ms + its MACs at widths rounded up to ``step`` (x ``odd`` when a
    width is not a multiple of ``step``). A whole model: 0.2 ms + ``fuse`` x the sum of its layers,
    so a table of layers timed alone mispredicts it unless the loop corrects."""

    def __init__(self, step=8, odd=1.0, fuse=1.5):
        self.step, self.odd, self.fuse = step, odd, fuse
        self.layer_calls = self.model_calls = 0

    def _ms(self, m, in_shape):
        o, i = _dims(m)
        groups = getattr(m, "groups", 1)
        hw = in_shape[-1] * in_shape[-2] if isinstance(m, nn.Conv2d) else 1
        k = int(np.prod(m.kernel_size)) if isinstance(m, nn.Conv2d) else 1
        up = lambda n: -(-n // self.step) * self.step  # noqa: E731
        ms = 0.01 + up(o) * up(i) / groups * k * hw / 1e6
        return ms * (self.odd if (o % self.step or i % self.step) else 1.0)

    def layer(self, m, in_shape):
        self.layer_calls += 1
        return self._ms(m, in_shape)

    def model(self, gm, inputs):
        self.model_calls += 1
        seen = []
        hooks = [m.register_forward_hook(lambda m, a, out: seen.append(self._ms(m, tuple(a[0].shape))))
                 for m in gm.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        try:
            with torch.no_grad():
                gm(*inputs)
        finally:
            for h in hooks:
                h.remove()
        return 0.2 + self.fuse * sum(seen)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("FXPRUNE_CACHE_DIR", str(tmp_path))
    timers = {}

    def register(name="toy", **kw):
        timers[name] = Staircase(**kw)
        lat.register_latency_backend(name, lambda threads: timers[name])
        return timers[name]

    yield register
    for name in timers:
        lat.LATENCY_BACKENDS.pop(name, None)


def _stair(step, widths=range(33, 65), noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return {w: (1 + -(-w // step)) * (1 + noise * rng.standard_normal()) for w in widths}


@pytest.mark.parametrize("step", [4, 8, 16])
def test_detect_step_finds_a_planted_staircase(step):
    assert lat.detect_step([_stair(step, noise=0.01, seed=s) for s in range(3)]) == step


def test_detect_step_is_one_without_steps_and_prefers_fast_multiples():
    assert lat.detect_step([{w: float(w) for w in range(33, 65)}]) == 1
    # odd widths 2x slower (ORT's depthwise convolution off its blocked kernels): step 4
    dw = {w: (1.0 if w % 4 == 0 else 2.0) * (1 + w / 64) for w in range(33, 65)}
    assert lat.detect_step([dw]) == 4


def test_backend_step_is_measured_on_the_backend_and_cached(toy):
    timer = toy(step=8, odd=2.0)
    assert lat.backend_step("toy", 1) == 8
    calls = timer.model_calls
    assert calls >= 2 * len(lat.PROBE_WIDTHS)  # the probe network at every width, timed whole
    lat._STEPS.clear()
    assert lat.backend_step("toy", 1) == 8 and timer.model_calls == calls  # from the cache file


def test_width_grid():
    assert lat.width_grid(64, 8) == [64, 56, 48, 40, 32, 24, 16, 8]
    assert lat.width_grid(64, 1) == [64, 56, 48, 40, 32, 24, 16, 8]
    assert lat.width_grid(20, 8) == [20, 16, 8]
    assert lat.width_grid(3, 8) == [3]


def test_table_interpolates_between_measured_widths(toy):
    from fxprune.compiler import analyse

    timer = toy(step=8, fuse=1.0)
    model = net(64, depth=1)
    x = torch.randn(1, 3, 16, 16)
    a = analyse(model, (x,))
    cm = lat.latency_model(a.cg, a.traced.eval_gm, backend="toy", threads=1, step=8)
    rows = cm.table["layers"]
    assert [len(r["points"]) for r in rows] == [8, 8, 8]  # every grid width of each layer
    assert cm.dense == pytest.approx(cm.table["total_ms"])
    groups = [g for g in a.cg.groups() if g.prunable]
    assert len(groups) == 2

    def keep_vec(k0, k1):
        vec = np.ones(a.cg.uf.n)
        for g, k in zip(groups, (k0, k1)):
            vec[g.classes[k:]] = 0.0
        return vec

    def truth(k0, k1):  # the toy's own latency of the pruned layers (the rest is a constant 0.2 ms)
        c0, c1, fc = nn.Conv2d(3, k0, 3), nn.Conv2d(k0, k1, 3), nn.Linear(k1, 10)
        return 0.2 + timer._ms(c0, (1, 3, 16, 16)) + timer._ms(c1, (1, k0, 16, 16)) + timer._ms(fc, (1, k1))

    # at measured widths (same fraction on every axis of a layer) the model is the measurement
    assert cm.evaluate(keep_vec(32, 32)) == pytest.approx(truth(32, 32), rel=1e-9)
    assert cm.evaluate(keep_vec(48, 48)) == pytest.approx(truth(48, 48), rel=1e-9)
    # between two measured widths: linear in the MACs fraction, between the two measurements
    mid = cm.evaluate(keep_vec(40, 44))
    assert cm.evaluate(keep_vec(40, 40)) < mid < cm.evaluate(keep_vec(40, 48))
    assert (cm.marginal(keep_vec(40, 44)) >= 0).all()


def test_latency_plan_lands_within_tolerance_by_closing_the_loop(toy):
    timer = toy(step=8, fuse=1.6)
    model = net(128, depth=3)
    x = torch.randn(1, 3, 16, 16)
    plan = fxprune.Plan(latency=0.5, backend="toy", latency_tolerance=0.05)
    assert plan.round_to == "auto"
    with _no_warning():
        small = fxprune.compile(model, plan, example_inputs=(x,))
    info = fxprune.report(small).latency
    its = info["iterations"]
    assert its[0]["asked"] == 0.5 and len(its) >= 2  # the table alone misses (fusion), the loop corrects
    assert abs(its[0]["ratio"] - 0.5) > 0.05 * 0.5
    assert abs(info["ratio"] - 0.5) <= 0.05 * 0.5
    measured = timer.model(small, (x,)) / timer.model(fxprune.analyse(model, (x,)).traced.eval_gm, (x,))
    assert measured == pytest.approx(info["ratio"])  # the reported ratio is the model returned
    assert info["round_to"] == 8
    widths = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths)
    assert "iteration(s)" in " ".join(fxprune.report(small).notes)
    res = fxprune.resolution_of(small)
    assert res.plan == plan  # the user's plan is recorded, not the corrected one
    again = fxprune.compile(model, resolution=fxprune.Resolution.from_json(res.to_json()), example_inputs=(x,))
    assert [m.weight.shape for m in again.modules() if isinstance(m, nn.Conv2d)] == \
           [m.weight.shape for m in small.modules() if isinstance(m, nn.Conv2d)]


class Spiky(Staircase):
    """A Staircase on a machine whose load doubles every time from the ``start``-th whole-model
    timing for ``length`` timings: here, while the first pruned model and its paired dense run."""

    def __init__(self, start, length, **kw):
        super().__init__(**kw)
        self.start, self.length = start, length

    def model(self, gm, inputs):
        spike = self.start <= self.model_calls < self.start + self.length
        return super().model(gm, inputs) * (2.0 if spike else 1.0)


def test_a_load_spike_over_one_round_does_not_move_the_plan(toy, monkeypatch):
    """Each round's ratio is of its own pair (the pruned model and the dense one timed together):
    a spike over the first round once read as a pruned model twice as slow against the calm dense
    time measured before, and the loop pruned far past the target."""
    toy(step=8, fuse=1.6)
    x = torch.randn(1, 3, 16, 16)
    model = net(128, depth=3)
    calm = fxprune.report(fxprune.compile(model, fxprune.Plan(latency=0.5, backend="toy"), (x,))).latency
    lat.register_latency_backend("toy", lambda threads: Spiky(lat.ROUNDS, 2 * lat.ROUNDS, step=8, fuse=1.6))
    spiky = fxprune.report(fxprune.compile(model, fxprune.Plan(latency=0.5, backend="toy"), (x,))).latency
    assert [it["ratio"] for it in spiky["iterations"]] == pytest.approx([it["ratio"] for it in calm["iterations"]])
    assert spiky["ratio"] == pytest.approx(calm["ratio"]) and abs(spiky["ratio"] - 0.5) <= 0.05 * 0.5
    assert spiky["iterations"][0]["dense_ms"] == pytest.approx(2 * calm["iterations"][0]["dense_ms"])


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


def test_unreachable_correction_says_so(toy):
    toy(step=8, fuse=1.0)
    model = net(64, depth=2)
    x = torch.randn(1, 3, 16, 16)
    # 0.2 ms is fixed and no layer loses more than max_sparsity: the plan says what it can reach
    with pytest.raises(PlanError, match=r"latency=0.005 cannot be reached.* keeps \d+\.\d% of its latency on toy"):
        fxprune.compile(model, fxprune.Plan(latency=0.005, backend="toy"), example_inputs=(x,))


def test_a_plan_slower_than_dense_on_its_backend_falls_back_to_the_step(toy):
    toy(step=8, odd=3.0, fuse=1.0)  # widths off the step run 3x slower
    model = net(64, depth=3)
    x = torch.randn(1, 3, 16, 16)
    plain = fxprune.compile(model, fxprune.Plan(flops=0.55), example_inputs=(x,))
    assert any(m.out_channels % 8 for m in plain.modules() if isinstance(m, nn.Conv2d))  # odd widths without it
    with pytest.warns(UserWarning, match="slower than the dense one .*round_to=8"):
        small = fxprune.compile(model, fxprune.Plan(flops=0.55, backend="toy", round_to=1), example_inputs=(x,))
    info = fxprune.report(small).latency
    assert info["iterations"][0]["ratio"] > 1.0 and info["ratio"] < 1.0
    assert all(m.out_channels % 8 == 0 for m in small.modules() if isinstance(m, nn.Conv2d))
    # the default with a backend is its step: no slower model in the first place
    auto = fxprune.compile(model, fxprune.Plan(flops=0.55, backend="toy"), example_inputs=(x,))
    assert len(fxprune.report(auto).latency["iterations"]) == 1 and fxprune.report(auto).latency["ratio"] < 1.0


def test_round_to_auto_needs_a_backend_and_round_trips():
    assert fxprune.Plan(flops=0.5).round_to == 1
    assert fxprune.Plan(flops=0.5, backend="ort").round_to == "auto"
    assert fxprune.Plan(latency=0.5).backend == "ort"
    with pytest.raises(PlanError, match="name one"):
        fxprune.Plan(round_to="auto")
    with pytest.raises(PlanError, match="positive integer or 'auto'"):
        fxprune.Plan(round_to="8")
    with pytest.raises(PlanError, match="latency_tolerance"):
        fxprune.Plan(latency=0.5, latency_tolerance=0.0)
    p = fxprune.Plan(flops=0.5, backend="ort")
    assert fxprune.Plan.from_json(p.to_json()) == p


def test_latency_table_is_measured_for_real_on_onnx_runtime(tmp_path, monkeypatch):
    from fxprune.compiler import analyse

    monkeypatch.setenv("FXPRUNE_CACHE_DIR", str(tmp_path))
    a = analyse(net(16, depth=1), (torch.randn(1, 3, 16, 16),))
    cm = lat.latency_model(a.cg, a.traced.eval_gm, backend="ort", threads=1, step=4)
    assert cm.dense > 0 and len(cm.table["layers"]) == 3
    for row in cm.table["layers"]:
        f, ms = zip(*row["points"])
        assert list(f) == sorted(f) and f[-1] == 1.0 and len(f) >= 3
        assert all(m > 0 for m in ms) and list(ms) == sorted(ms)  # narrower never slower (monotone table)
    assert json.loads(next((tmp_path / "latency").glob("ort-*.json")).read_text())["step"] == 4


class ChannelsLastMLP(nn.Module):
    """ConvNeXt's pattern: a linear layer over (N, H, W, C)."""

    def __init__(self, c=16):
        super().__init__()
        self.conv, self.fc1, self.fc2 = nn.Conv2d(3, c, 3, padding=1), nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1)
        return self.fc2(torch.relu(self.fc1(y))).permute(0, 3, 1, 2)


def test_onnx_runtime_table_times_linear_layers_over_4d_inputs(tmp_path, monkeypatch):
    from fxprune.compiler import analyse

    monkeypatch.setenv("FXPRUNE_CACHE_DIR", str(tmp_path))
    a = analyse(ChannelsLastMLP(), (torch.randn(1, 3, 8, 8),))
    cm = lat.latency_model(a.cg, a.traced.eval_gm, backend="ort", threads=1, step=4)
    # every width ran in ONNX Runtime (MatMul over rank 4); fc1 and fc2 are prunable on both axes
    assert [len(r["points"]) for r in cm.table["layers"]] == [4, 8, 8]
