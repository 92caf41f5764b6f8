"""``fxprune train`` under torchrun: 2 CPU ranks (gloo) keep identical masks and models. A file of
its own so that the two launches run beside the other training tests under ``pytest -n``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train_cli import _check_result

ROOT = Path(__file__).resolve().parents[1]


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
