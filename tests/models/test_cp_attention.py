"""Skeleton CP model: synthetic data, planted-joint ranking, pruning through channel attention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fxprune
from fxprune.apps.cp.data import JOINTS, joint_index, load_skeleton_npz, synthetic_infant_movements
from fxprune.errors import ModelError, PlanError
from fxprune.apps.cp.model import CPAttentionNet, evaluate_cp, joint_importance, train_cp
from tests.conftest import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def trained():
    data = synthetic_infant_movements(480, planted=("l_wrist", "r_ankle"), seed=3)
    train, test = data.split(0.75, seed=3)
    torch.manual_seed(0)
    model = CPAttentionNet()
    train_cp(model, train, epochs=12, seed=3)
    return model, train, test


def test_generator_layout_and_planted_signal():
    d = synthetic_infant_movements(200, planted=("l_knee",), seed=1)
    assert d.x.shape == (200, 3, 64, 18) and d.x.dtype == torch.float32
    assert set(d.y.tolist()) == {0, 1} and d.planted == (JOINTS.index("l_knee"),)
    # the planted joint's motion differs between classes; an unplanted limb joint's does not
    motion = d.x[:, :2].std(dim=2).mean(dim=1)  # N x V
    j, other = JOINTS.index("l_knee"), JOINTS.index("r_knee")
    m0, m1 = motion[d.y == 0], motion[d.y == 1]
    assert m1[:, j].mean() < 0.7 * m0[:, j].mean()  # drift and noise are in both
    assert abs(float(m1[:, other].mean() / m0[:, other].mean()) - 1) < 0.15
    # deterministic per seed
    assert torch.equal(synthetic_infant_movements(10, seed=5).x, synthetic_infant_movements(10, seed=5).x)


def test_joint_names_are_checked():
    assert joint_index(["nose", 3, "17"]) == (0, 3, 17)
    with pytest.raises(PlanError, match="unknown joint 'wrist'"):
        synthetic_infant_movements(10, planted=("wrist",))


def test_trained_model_ranks_planted_joints_first(trained):
    model, _, test = trained
    assert evaluate_cp(model, test) > 0.9
    imp = joint_importance(model, test)
    top2 = set(np.argsort(-imp)[:2].tolist())
    assert top2 == set(test.planted), [(JOINTS[j], round(float(imp[j]), 3)) for j in np.argsort(-imp)[:5]]


def test_forward_exposes_attention(trained):
    model, _, test = trained
    logits = model(test.x[:5])
    assert logits.shape == (5, 2)
    assert model.last_attention.shape == (5, 3, 18)
    assert ((model.last_attention > 0) & (model.last_attention < 1)).all()


def test_compile_through_attention_products(trained):
    model, train, test = trained
    before = snapshot(model)
    calib = [xb for xb, _ in train.batches(64)][:3]
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5, criterion="attention"), test.x[:8],
                            calibration_data=calib)
    assert_unchanged(model, before)
    r = fxprune.report(small)
    assert r.max_abs_error is not None and r.macs_after < 0.5 * r.macs_before
    # the residual stream and every gate that multiplies it are one class: the block convs and
    # their attention output layers shrink together
    assert small.get_submodule("blocks.0.conv").out_channels == 32
    assert small.get_submodule("blocks.1.attention.fc2").out_features == 32
    assert small(test.x[:4]).shape == (4, 2)


def test_attention_criterion_keeps_the_open_gates(trained):
    """Zeroing the channels the attention criterion drops changes the outputs less than zeroing
    the ones it keeps (the gates' mean value is an importance)."""
    model, train, test = trained
    calib = [xb for xb, _ in train.batches(64)][:3]
    res = fxprune.resolve(model, fxprune.Plan(sparsity=0.5, criterion="attention"), test.x[:8], calibration_data=calib)
    key = next(k for k in res.groups if k.startswith("blocks.2.conv"))
    keep = res.groups[key].keep
    drop = sorted(set(range(res.groups[key].size)) - set(keep))

    with torch.no_grad():
        dense = model(test.x)

    def change(channels):  # mean |logit change| when these channels of block 2 are zeroed
        m = CPAttentionNet()
        m.load_state_dict(model.state_dict())
        m.eval()

        def hook(mod, inp, out):
            out = out.clone()
            out[:, channels] = 0
            return out

        m.blocks[2].attention.register_forward_hook(hook)
        with torch.no_grad():
            return float((m(test.x) - dense).abs().mean())

    assert change(drop) < change(keep)


def test_npz_loader(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 2, 10, 5)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 1, 0, 1]))
    d = load_skeleton_npz(tmp_path / "d.npz")
    assert d.x.shape == (6, 2, 10, 5) and d.joints == tuple(f"joint{j}" for j in range(5))
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(ModelError, match="needs arrays 'x'"):
        load_skeleton_npz(tmp_path / "bad.npz")


def test_explain_joints_cli(tmp_path):
    from fxprune.cli import main

    rc = main(["explain-joints", "--samples", "240", "--epochs", "6", "--prune", "0.5", "--out", str(tmp_path)])
    assert rc == 0
    rec = json.loads((tmp_path / "joints.json").read_text())
    assert len(rec["joints"]) == 18 and {p["joint"] for p in rec["planted"]} == {"l_wrist", "r_ankle"}
    assert rec["pruned"]["macs_ratio"] < 0.5  # (what training learns: test_trained_model_ranks_planted_joints_first)
    assert (tmp_path / "joints.png").stat().st_size > 10_000 and (tmp_path / "pruned.fxp").exists()
    # a saved model is reloaded instead of trained
    rc = main(["explain-joints", "--samples", "240", "--weights", str(tmp_path / "model.pt"), "--out", str(tmp_path / "b")])
    rec2 = json.loads((tmp_path / "b" / "joints.json").read_text())
    assert rc == 0 and rec2["joints"] == rec["joints"]


def test_prune_cli_with_skeleton_model_and_data(tmp_path, capsys):
    from fxprune.cli import main

    assert main(["prune", "--model", "skeleton:cp_attention", "--criterion", "attention", "--data", "skeleton",
                 "--out", str(tmp_path)]) == 0
    assert fxprune.load(tmp_path / "model.fxp")(torch.randn(2, 3, 64, 18)).shape == (2, 2)
    # image model + skeleton data: a named error, not a traceback
    assert main(["prune", "--model", "torchvision:resnet18", "--criterion", "taylor", "--data", "skeleton",
                 "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
