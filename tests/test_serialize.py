"""save / load: round trips in a fresh process, and no code runs from an untrusted file."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

import fxprune
from fxprune.serialize import to_state
from tests.conftest import randomize


def test_round_trip_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    m = randomize(torchvision.models.googlenet(init_weights=True)).eval()
    x = torch.randn(1, 3, 64, 64)
    small = fxprune.compile(m, fxprune.Plan(), example_inputs=(x,))
    fxprune.save(small, tmp_path / "m.fxp")
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(small(x), tmp_path / "y.pt")
    code = f"""
import torch, fxprune
m = fxprune.load(r"{tmp_path / 'm.fxp'}")
x = torch.load(r"{tmp_path / 'x.pt'}")
with torch.no_grad():
    assert torch.equal(m(x), torch.load(r"{tmp_path / 'y.pt'}"))
m.train()
out = m(torch.randn(2, 3, 64, 64))
assert len(out) == 3, out
print(fxprune.report(m).params_after)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) == fxprune.report(small).params_after


def test_deepcopy_and_pickle_keep_both_graphs():
    import copy

    class Aux(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            y = self.b(torch.relu(self.a(x)))
            return (y, y * 2) if self.training else y

    small = fxprune.compile(randomize(Aux()), fxprune.Plan(), example_inputs=(torch.randn(2, 4),))
    for clone in (copy.deepcopy(small), pickle.loads(pickle.dumps(small))):
        clone.train()
        assert isinstance(clone(torch.randn(2, 4)), tuple)
        clone.eval()
        assert isinstance(clone(torch.randn(2, 4)), torch.Tensor)


class CustomLeaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale


def test_custom_modules_need_trust(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 8, 1), CustomLeaf(), nn.Conv2d(8, 2, 1))
    small = fxprune.compile(m, fxprune.Plan(), example_inputs=(torch.randn(1, 3, 4, 4),),
                            leaf_modules=[CustomLeaf])
    fxprune.save(small, tmp_path / "m.fxp")
    with pytest.raises(fxprune.SerializationError, match="trusted=True"):
        fxprune.load(tmp_path / "m.fxp")
    again = fxprune.load(tmp_path / "m.fxp", trusted=True)
    assert isinstance(again.get_submodule("1"), CustomLeaf)


def test_a_file_calling_a_dangerous_function_is_refused(tmp_path):
    small = fxprune.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), fxprune.Plan(),
                            example_inputs=(torch.randn(1, 4),))
    state = to_state(small)
    for evil in ('"fn": "os:system"', '"fn": "torch.hub:load"', '"fn": "builtins:eval"'):
        bad = dict(state, spec=state["spec"].replace('"fn": "torch:relu"', evil).replace(
            '"call_module", "target": "1"', '"call_function", "target": {' + evil + '}'))
        torch.save(bad, tmp_path / "evil.fxp")
        with pytest.raises(fxprune.SerializationError):
            fxprune.load(tmp_path / "evil.fxp")


def test_not_an_fxprune_file(tmp_path):
    torch.save({"a": torch.ones(1)}, tmp_path / "x.fxp")
    with pytest.raises(fxprune.SerializationError):
        fxprune.load(tmp_path / "x.fxp")


@pytest.mark.parametrize("where", ["root", "child"])
@pytest.mark.parametrize("kind", ["forward", "pre"])
def test_models_with_hooks_are_refused_not_saved_without_them(tmp_path, where, kind):
    m = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(1, 3, 4, 4),))
    target = small if where == "root" else next(c for c in small.modules() if isinstance(c, nn.Conv2d))
    if kind == "forward":
        target.register_forward_hook(lambda mod, args, out: out * 2)
    else:
        target.register_forward_pre_hook(lambda mod, args: tuple(a * 2 for a in args))
    with pytest.raises(fxprune.SerializationError, match="hooks"):
        fxprune.save(small, tmp_path / "m.fxp")
    assert not (tmp_path / "m.fxp").exists()


def test_save_into_a_missing_directory(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    small = fxprune.compile(m, fxprune.Plan(), example_inputs=(torch.randn(1, 3, 4, 4),))
    with pytest.raises(fxprune.SerializationError, match="does not exist"):
        fxprune.save(small, tmp_path / "nope" / "m.fxp")

