"""``fxprune train``: the acceptance interface, every method, and DDP under torchrun (2 CPU ranks, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fxprune
from fxprune.cli import main
from fxprune.data import digits_loaders
from fxprune.train import accuracy

ROOT = Path(__file__).resolve().parents[1]


def _check_result(out: Path, method: str, epochs: int) -> dict:
    r = json.loads((out / "result.json").read_text())
    assert r["method"] == method and r["epochs"] == epochs
    small = fxprune.load(out / "model.fxp")
    _, _, test = digits_loaders(64, seed=0)  # the fixed test split the command evaluates on
    assert accuracy(small, test) == pytest.approx(r["test_accuracy"], abs=1e-9)  # the reported number is real
    with torch.no_grad():
        assert small.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert fxprune.report(small).macs_ratio == pytest.approx(r["macs_ratio"])
    return r


@pytest.mark.parametrize("method", ["ghfp", "sfp", "hfp", "dais", "oneshot"])
def test_train_writes_result_and_a_loadable_model_at_the_budget(method, tmp_path):
    out = tmp_path / method
    assert main(["train", "--method", method, "--model", "cifar:resnet20", "--data", "digits", "--flops", "0.5",
                 "--epochs", "2", "--seed", "1", "--out", str(out)]) == 0
    r = _check_result(out, method, 2)
    assert 0.49 <= r["macs_ratio"] <= 0.5 + 0.01 * (method == "dais")
    assert len(r["history"]) == 2


def test_dense_training_saves_a_loadable_model(tmp_path):
    """``--method dense`` trains without pruning and still writes result.json and a model.fxp
    (the trained network compiled with an identity plan); it crashed on save before."""
    assert main(["train", "--method", "dense", "--model", "cifar:resnet20", "--epochs", "1", "--out",
                 str(tmp_path)]) == 0
    r = _check_result(tmp_path, "dense", 1)
    assert r["macs_ratio"] == pytest.approx(1.0) and "identity plan" in r["saved_as"]


def test_train_names_a_model_that_does_not_fit_the_data(tmp_path, capsys):
    assert main(["train", "--method", "ghfp", "--model", "torchvision:resnet18", "--epochs", "1",
                 "--out", str(tmp_path)]) == 1
    assert "cifar:resnet20" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["ghfp", "dais"])
def test_ddp_two_ranks_keep_identical_masks_and_models(method, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fxprune.cli", "train", "--method", method, "--epochs", "2", "--threads", "1",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = _check_result(tmp_path, method, 2)
    assert r["world_size"] == 2 and len(r["ranks"]) == 2
    assert r["identical"], r["ranks"]
    assert r["ranks"][0]["masks"] is not None
