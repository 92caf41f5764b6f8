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


def test_latency_plan_errors():
    with pytest.raises(PlanError, match="latency tables can be measured on"):
        fxprune.Plan(latency=0.5, backend="tpu")
    with pytest.raises(PlanError, match="one of"):
        fxprune.Plan(latency=0.5, flops=0.5)


def test_cli_bench_latency_plan_reports_its_iterations(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FXPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "b.json"
    assert main(["bench", "--model", "torchvision:resnet18", "--input-shape", "1,3,64,64", "--latency", "0.6",
                 "--backend", "ort", "--batch", "1",
                 "--processes", "1", "--iters", "5", "--warmup", "1", "--threads", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    _check_schema(res, ["ort"])
    m = res["plan_measurement"]
    assert res["plan"]["latency"] == 0.6 and res["plan"]["round_to"] == "auto" and m["backend"] == "ort"
    assert 1 <= len(res["iterations"]) <= 4 and res["iterations"][0]["asked"] == 0.6
    assert m["ratio"] == min((it["ratio"] for it in res["iterations"]), key=lambda r: abs(r - 0.6))
    assert m["round_to"] in (1, 2, 4, 8, 16, 32)
    assert "planner target" in capsys.readouterr().out
