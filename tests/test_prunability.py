"""The prunability sweep (benchmarks/prunability.py) on a fast subset: every model prunes at 50%
with local and global l1, verifies, and runs forward in train and eval mode."""

from __future__ import annotations

import pytest

from benchmarks.prunability import markdown, run_fxprune, summary

FAST = ["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "googlenet", "squeezenet1_1",
        "regnet_x_400mf", "mnasnet0_5", "efficientnet_b0"]


@pytest.fixture(scope="module")
def rows():
    return [r for name in FAST for r in run_fxprune(name, timed=False)]


def test_fast_subset_prunes_verifies_and_runs_in_both_modes(rows):
    assert len(rows) == 2 * len(FAST)
    for r in rows:
        assert r["ok"], (r["model"], r["scope"], r.get("error"))
        assert r["eval_ok"] and r["train_ok"] and r["output_shape"] == "1x1000"
        assert r["relative_error"] < 1e-4 and r["macs_ratio"] < 0.9 and r["params_ratio"] < 0.9


def test_report_table_and_summary(rows):
    table = markdown(rows, peer=None)
    assert table.count("\n") == len(FAST) + 2 and "FAIL" not in table
    s = summary(rows, peer=None)
    assert s["fxprune_ok_local"] == s["fxprune_ok_global"] == len(FAST)
