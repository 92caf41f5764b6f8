"""The fxprune command line."""

from __future__ import annotations

import json
import subprocess
import sys

import fxprune
from fxprune.cli import main


def test_prune_writes_model_plan_resolution_and_report(tmp_path, capsys):
    rc = main(["prune", "--model", "torchvision:mobilenet_v3_small", "--sparsity", "0.3", "--round-to", "8",
               "--input-shape", "1,3,96,96", "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "params" in printed and "MACs" in printed and "verification" in printed
    for f in ("model.fxp", "plan.json", "resolution.json", "report.json"):
        assert (tmp_path / f).exists()
    assert fxprune.Plan.from_json(tmp_path / "plan.json").round_to == 8
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["params_after"] < report["params_before"]
    model = fxprune.load(tmp_path / "model.fxp")
    assert fxprune.report(model).params_after == report["params_after"]


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["prune", "--model", "torchvision:resnet18", "--ignore", "layer9", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "layer9" in captured.err and "layer9" not in captured.out
    res = subprocess.run([sys.executable, "-m", "fxprune.cli", "prune", "--model", "nope:x", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "model spec" in res.stderr and "Traceback" not in res.stderr


def test_prune_to_a_flops_budget_with_a_data_criterion(tmp_path, capsys):
    rc = main(["prune", "--model", "cifar:resnet20", "--flops", "0.5", "--scope", "global", "--criterion", "taylor",
               "--data", "digits", "--batches", "1", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0.49 <= report["macs_after"] / report["macs_before"] <= 0.5
    assert fxprune.Plan.from_json(tmp_path / "plan.json").flops == 0.5


def test_structure_options_reach_the_plan_and_json_goes_to_stdout(tmp_path, capsys):
    rc = main(["prune", "--model", "cifar:resnet20", "--sparsity", "0.25", "--attention", "head_dims",
               "--layer-norm", "native", "--prune-outputs", "--out", str(tmp_path), "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout is the JSON object alone
    report = json.loads((tmp_path / "report.json").read_text())
    assert result["macs_ratio"] == report["macs_after"] / report["macs_before"] < 1.0
    assert result["max_abs_error"] == report["max_abs_error"] and "MACs" in captured.err
    plan = fxprune.Plan.from_json(tmp_path / "plan.json")
    assert (plan.attention, plan.layer_norm, plan.prune_outputs) == ("head_dims", "native", True)
    import pytest

    with pytest.raises(SystemExit):  # argparse refuses a value outside the choices
        main(["prune", "--model", "cifar:resnet20", "--layer-norm", "kept", "--out", str(tmp_path)])
    assert "kept" in capsys.readouterr().err


def test_help_and_version_load_no_torch():
    """``fxprune --help`` / ``--version`` / ``VERB --help`` run on argparse alone: torch (and every
    verb's dependencies) load only when a command runs; ``import fxprune`` loads names on use."""
    code = ("import sys, contextlib, io\n"
            "import fxprune\n"
            "assert 'torch' not in sys.modules, 'import fxprune loaded torch'\n"
            "from fxprune.cli import main\n"
            "for argv in (['--help'], ['--version'], ['prune', '--help'], ['stylize', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit as e:\n"
            "            assert e.code == 0, argv\n"
            "print(sorted(m for m in ('torch', 'scipy', 'matplotlib', 'onnx', 'sklearn', 'skimage') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"
    assert fxprune.compile.__module__ == "fxprune.compiler" and callable(fxprune.report)


def test_export_and_analyze_print_json_on_stdout(tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", "cifar:resnet20", "--sparsity", "0.5", "--onnx", str(onnx), "--latency-backend",
                 "none", "--json"]) == 0
    out = capsys.readouterr()
    info = json.loads(out.out)  # stdout is the JSON object alone; the table went to stderr
    assert info == json.loads(onnx.with_suffix(".json").read_text())
    assert info["plan"]["round_to"] == 1 and info["plan_measurement"] is None and 0 < info["macs_ratio"] < 0.5
    assert "fxprune export" in out.err
    assert main(["analyze", "--model", "cifar:resnet20", "--criteria", "l1", "l2", "--out", str(tmp_path / "a"),
                 "--json"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert set(summary["pairs"]) == {"l1~l2"} and "similarity of criteria" in out.err
