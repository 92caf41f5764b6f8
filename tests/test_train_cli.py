"""``fxprune train``: the acceptance interface and every method (DDP: test_train_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fxprune
from fxprune.cli import main
from fxprune.data import digits_loaders
from fxprune.train import accuracy

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
