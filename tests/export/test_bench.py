"""The latency benchmark: a short run of a tiny model, the JSON schema, backends that are not
here, latency-budget plans."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import fxprune
from fxprune.bench import BenchConfig, compare
from fxprune.timing import percentile, stats
from fxprune.cli import main
from fxprune.errors import BenchmarkError, PlanError


def tiny(c: int = 32):
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c, 10)).eval()


def _check_schema(res: dict, backends: list[str]) -> None:
    assert res["schema"] == "fxprune.bench/1"
    assert 0 < res["macs_ratio"] < 1 and res["theoretical_speedup"] == pytest.approx(1 / res["macs_ratio"])
    assert set(res["backends"]) == set(backends)
    for b in res["backends"].values():
        for which in ("dense", "pruned"):
            d = b[which]
            assert d["p10_ms"] <= d["median_ms"] <= d["p90_ms"]  # medians of ordered triples stay ordered
            assert d["median_ms"] > 0 and all(n >= 5 for n in d["samples_per_process"])
        assert b["speedup"] == pytest.approx(b["dense"]["median_ms"] / b["pruned"]["median_ms"])
        assert b["macs_ratio"] == res["macs_ratio"]
        assert b["efficiency"] == pytest.approx(b["speedup"] / res["theoretical_speedup"])
    json.dumps(res)


def test_short_bench_run_in_worker_processes():
    model = tiny()
    x = torch.randn(1, 3, 16, 16)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    res = compare(model, small, (x,), BenchConfig(backends=["eager", "cuda-fp16"], batch=2, threads=1,
                                                  warmup=2, iters=10, processes=2))
    _check_schema(res, ["eager"] if not torch.cuda.is_available() else ["eager", "cuda-fp16"])
    assert res["batch"] == 2 and res["threads"] == 1
    assert len(res["backends"]["eager"]["dense"]["process_medians_ms"]) == 2
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in res["skipped"]["cuda-fp16"]
    with pytest.raises(BenchmarkError, match="unknown backend"):
        compare(model, small, (x,), BenchConfig(backends=["tpu"]))


def test_timing_statistics():
    s = stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.n) == (3.0, 5) and s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(4.6)
    assert percentile([7.0], 0.9) == 7.0


def test_cli_bench_writes_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bench", "--model", "cifar:resnet20", "--sparsity", "0.5", "--backend", "ort", "--batch", "2",
                 "--processes", "1", "--iters", "5", "--warmup", "1", "--threads", "1", "--json", str(out),
                 "--plot", str(png)]) == 0
    res = json.loads(out.read_text())
    _check_schema(res, ["ort"])
    assert res["model"] == "cifar:resnet20" and png.stat().st_size > 1000
    assert res["backends"]["ort"]["info"]["providers"] == ["CPUExecutionProvider"]
    assert "speed-up" in capsys.readouterr().out


class _MacsTimer:
    """A deterministic stand-in for the latency timer: 0.05 ms per layer + 1 ms per 10 MMACs."""

    def __init__(self, backend, threads):
        pass

    def layer(self, m, in_shape):
        hw = in_shape[-1] * in_shape[-2] if isinstance(m, nn.Conv2d) else 1
        return 0.05 + m.weight.numel() * hw / 1e7


def test_latency_budget_plan_meets_the_predicted_budget(tmp_path, monkeypatch):
    import fxprune.graph.latency as lat

    monkeypatch.setenv("FXPRUNE_CACHE_DIR", str(tmp_path))
    model = tiny(64)
    x = torch.randn(1, 3, 32, 32)

    class Timer(_MacsTimer):
        def model(self, gm, inputs):
            return 0.1 + sum(self.layer(m, s) for m, s in ((model[0], (1, 3, 32, 32)), (model[3], (1, 64, 32, 32)),
                                                           (model[7], (1, 64))))

    monkeypatch.setattr(lat, "_Timer", Timer)
    small = fxprune.compile(model, fxprune.Plan(latency=0.5, backend="ort"), example_inputs=(x,))
    tables = list((tmp_path / "latency").glob("ort-*.json"))
    assert len(tables) == 1
    t = json.loads(tables[0].read_text())
    assert [r["fraction"] for r in t["layers"]] == [0.5, 0.25, 0.5]
    # predicted latency of the pruned widths, from the same timer, is within the budget
    conv0, conv1, fc = (small.get_submodule(n) for n in ("0", "3", "7"))
    timer = Timer(None, 1)
    pred = 0.1 + timer.layer(conv0, (1, 3, 32, 32)) + timer.layer(conv1, (1, conv1.in_channels, 32, 32)) \
        + timer.layer(fc, (1, fc.in_features))
    assert 0.45 * t["total_ms"] <= pred <= 0.5 * t["total_ms"] * 1.001
    # the same plan again reads the cached table (no timing) and resolves identically
    monkeypatch.setattr(lat, "_Timer", None)
    again = fxprune.compile(model, fxprune.Plan(latency=0.5, backend="ort"), example_inputs=(x,))
    assert fxprune.report(again).macs_ratio == fxprune.report(small).macs_ratio


def test_latency_table_is_measured_for_real(tmp_path, monkeypatch):
    from fxprune.graph.latency import latency_model
    from fxprune.compiler import analyse

    monkeypatch.setenv("FXPRUNE_CACHE_DIR", str(tmp_path))
    a = analyse(tiny(16), (torch.randn(1, 3, 16, 16),))
    cm = latency_model(a.cg, a.traced.eval_gm, backend="ort", threads=1)
    assert cm.dense > 0 and len(cm.table["layers"]) == 3
    assert all(r["full_ms"] > 0 and r["half_ms"] > 0 for r in cm.table["layers"])


def test_latency_plan_errors():
    with pytest.raises(PlanError, match="latency tables can be measured on"):
        fxprune.Plan(latency=0.5, backend="tpu")
    with pytest.raises(PlanError, match="give latency"):
        fxprune.Plan(backend="ort")
    with pytest.raises(PlanError, match="one of"):
        fxprune.Plan(latency=0.5, flops=0.5)
