"""Bad input on the command line: a named error on stderr, exit code 1, no traceback (unless
--verbose); argparse usage errors keep exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fxprune.cli import main


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 10)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    (tmp_path / "bad.json").write_text("{not json")
    return tmp_path


R18 = ["--model", "torchvision:resnet18", "--input-shape", "1,3,32,32"]
CASES = {
    "out_is_a_file": (["prune", *R18, "--out", "{t}/afile"], "existing file"),
    "out_unwritable": (["prune", *R18, "--out", "/proc/fxprune-nope/x"], "cannot create --out"),
    "weights_missing": (["prune", *R18, "--weights", "{t}/missing.pt", "--out", "{t}/o"], "does not exist"),
    "weights_garbage": (["prune", *R18, "--weights", "{t}/garbage.pt", "--out", "{t}/o"], "not a readable state-dict"),
    "weights_wrong_model": (["prune", *R18, "--weights", "{t}/wrong.pt", "--out", "{t}/o"], "does not fit ResNet"),
    "plan_missing": (["export", *R18, "--plan", "{t}/missing.json", "--onnx", "{t}/m.onnx"], "cannot read the plan"),
    "plan_not_json": (["export", *R18, "--plan", "{t}/bad.json", "--onnx", "{t}/m.onnx"], "not valid JSON"),
    "train_options_not_json": (["train", "--method", "ghfp", "--options", "{{bad", "--out", "{t}/o"], "--options is not valid JSON"),
    "train_options_not_object": (["train", "--method", "ghfp", "--options", "[1]", "--out", "{t}/o"], "JSON object"),
    "unknown_model": (["prune", "--model", "torchvision:nope", "--out", "{t}/o"], "no model 'nope'"),
    "bad_sparsity": (["prune", *R18, "--sparsity", "1.5", "--out", "{t}/o"], "sparsity must be"),
    "unknown_ignore": (["prune", *R18, "--ignore", "layer9", "--out", "{t}/o"], "layer9"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_named_error_on_stderr_exit_1(case, files, capsys):
    argv, expected = CASES[case]
    argv = [a.format(t=files) for a in argv]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert expected in captured.err, captured.err
    assert "Traceback" not in captured.err and "error" not in captured.out.lower()


def test_verbose_shows_the_traceback(files, capsys):
    assert main(["--verbose", "prune", *R18, "--out", f"{files}/afile"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "existing file" in err


def test_usage_errors_stay_exit_2_and_version():
    res = subprocess.run([sys.executable, "-m", "fxprune.cli", "prune", "--bogus"], capture_output=True, text=True)
    assert res.returncode == 2 and "usage:" in res.stderr
    res = subprocess.run([sys.executable, "-m", "fxprune.cli", "--version"], capture_output=True, text=True)
    import fxprune

    assert res.returncode == 0 and res.stdout.strip() == f"fxprune {fxprune.__version__}"
