"""Forward arguments the example inputs do not supply are fixed to their defaults (recorded in the
report); the pruned model keeps their names and refuses another value."""

import pytest
import torch
from torch import nn

import fxprune
from fxprune.errors import PlanError


class WithFlags(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.b = nn.Conv2d(8, 6, 3)

    def forward(self, x, return_features=False, scale=None):
        f = self.a(x)
        y = self.b(torch.relu(f))
        if scale is not None:
            y = y * scale
        return (y, f) if return_features else y


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def test_unsupplied_flags_are_fixed_to_their_defaults(tmp_path):
    model, x = WithFlags().eval(), _x()
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.fixed_arguments == {"return_features": "False", "scale": "None"}
    assert any("return_features=False" in n for n in rep.notes)
    assert rep.macs_ratio < 0.8 and rep.max_abs_error is not None
    assert small.b.in_channels < 8
    # the same values by name are accepted; another value is refused, naming the argument
    torch.testing.assert_close(small(x, return_features=False, scale=None), small(x))
    with pytest.raises(AssertionError, match="return_features"):
        small(x, return_features=True)
    with pytest.raises(AssertionError, match="scale"):
        small(x, scale=2.0)
    path = tmp_path / "m.fxp"
    fxprune.save(small, path)
    loaded = fxprune.load(path)
    torch.testing.assert_close(loaded(x), small(x))
    assert fxprune.report(loaded).fixed_arguments == rep.fixed_arguments


def test_concrete_args_win_over_defaults():
    model, x = WithFlags().eval(), _x()
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,),
                            concrete_args={"return_features": True})
    y, f = small(x)
    assert f.shape[1] == small.a.out_channels
    assert fxprune.report(small).fixed_arguments == {"scale": "None"}


class NeedsTwo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x, mask):
        return self.a(x) * mask


def test_unsupplied_argument_without_default_is_named():
    with pytest.raises(PlanError, match="`mask`.*no default"):
        fxprune.compile(NeedsTwo(), fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 4),))


def test_loading_a_model_with_fixed_none_arguments_leaves_later_traces_working(tmp_path) -> None:
    """A fixed ``scale=None`` puts fx's own ``_assert_is_none`` into the graph; loading the saved
    model once marked it wrapped, and the generated ``wrap()`` of its dotted name broke every
    later trace in the process (KeyError)."""
    model = WithFlags().eval()
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(_x(),))
    fxprune.save(small, tmp_path / "m.fxp")
    loaded = fxprune.load(tmp_path / "m.fxp")
    torch.testing.assert_close(loaded(_x()), small(_x()))
    again = fxprune.compile(WithFlags().eval(), fxprune.Plan(sparsity=0.5), example_inputs=(_x(),), capture="fx")
    assert fxprune.report(again).capture == "fx"
