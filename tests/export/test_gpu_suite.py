"""The GPU suite's pipeline, end to end on the CPU (``--dry-run``): every model and variant timed
on every backend, speed-ups against the right baselines, JSON and Markdown written."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.gpu_suite import main


def test_dry_run_times_every_model_and_writes_the_tables(tmp_path, capsys):
    out = tmp_path / "suite.json"
    assert main(["--dry-run", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["schema"] == "fxprune.gpu_suite/1" and result["dry_run"]
    rows = result["rows"]
    errors = [r for r in rows if "median_ms" not in r]
    assert not errors, errors
    artnet = {r["variant"]: r for r in rows if r["group"] == "ArtNet"}
    assert set(artnet) == {"ArtNet dense", "ArtNet zero-channel", "ArtNet zero + cpmc 50%", "VGG-19 AdaIN (baseline)"}
    assert artnet["ArtNet dense"]["speedup_vs_dense"] == pytest.approx(1.0)
    assert all(r["fps"] == pytest.approx(1e3 / r["median_ms"]) and "speedup_vs_vgg" in r for r in artnet.values())
    models = {r["group"] for r in rows if r["group"] != "ArtNet"}
    assert len(models) == 3
    for m in models:
        for batch in ("1", "2"):
            pair = [r for r in rows if r["group"] == m and r["batch"] == batch]
            assert len(pair) == 2 and any(r["variant"] == "dense" for r in pair)
            pruned = next(r for r in pair if r["variant"] != "dense")
            dense = next(r for r in pair if r["variant"] == "dense")
            assert pruned["speedup_vs_dense"] == pytest.approx(dense["median_ms"] / pruned["median_ms"])
    table = out.with_suffix(".md").read_text()
    assert table.count("\n| ") == len(rows) + 1 and "dry run" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_without_a_gpu_it_says_so_and_points_to_the_dry_run(tmp_path, capsys):
    assert main(["--json", str(tmp_path / "s.json")]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_a_spent_budget_lists_the_rest_as_skipped(tmp_path):
    from benchmarks.gpu_suite import Clock, Settings, run_jobs

    s = Settings(device="cpu", backends=["eager"], image=8, batches=(1,), classifier_size=8, iters=2, warmup=0,
                 max_seconds=1.0, budget_s=0.0, compile_mode="default")
    model = torch.nn.Linear(3, 2)
    rows = run_jobs([("toy", "dense", "1", lambda: (model, (torch.randn(1, 3),)))], s, Clock(0.0), tmp_path,
                    lambda text: None)
    assert rows == [{"group": "toy", "variant": "dense", "batch": "1", "backend": "eager",
                     "skipped": "time budget of 0 s spent"}]
    s.budget_s = 60.0
    rows = run_jobs([("toy", "dense", "1", lambda: (model, (torch.randn(1, 3),)))], s, Clock(60.0), tmp_path,
                    lambda text: None)
    assert rows[0]["median_ms"] > 0 and rows[0]["samples"] == 2
