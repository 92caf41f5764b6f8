"""Integer / list channel indices (renumbered), advanced indexing on a non-channel axis (channels
pass), weight-normalised layers (pruned through g and v, exactly), other parametrizations
(pinned with a named reason), and submodule names GraphModule reserves (named error)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, weight_norm

import fxprune
from tests.conftest import randomize


class Picks(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 8, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        pick = {"int": lambda: y[:, 11], "negative": lambda: y[:, -3], "select": lambda: torch.select(y, 1, 11),
                "method": lambda: y.select(1, 13), "ellipsis": lambda: y[:, 9, ...],
                "list": lambda: y[:, [2, 11, 13]].sum(1)}[self.how]()
        return self.b(y) * torch.sigmoid(pick).unsqueeze(1)


@pytest.mark.parametrize("how", ["int", "negative", "select", "method", "ellipsis", "list"])
def test_channel_index_is_renumbered(how):
    m = randomize(Picks(how)).eval()
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 3, 8, 8),))
    rep = fxprune.report(small)  # verified: the pruned index reads the same channel
    assert small.a.out_channels < 16
    assert any("picks" in b.reason for b in rep.barriers)
    with torch.no_grad():
        x = torch.randn(3, 3, 8, 8)
        assert small(x).shape == m(x).shape


class Gather(nn.Module):
    """Tokens gathered by an index tensor along the flattened batch*position axis (DGCNN-style)."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Conv2d(3, 16, 3, padding=1), nn.Linear(16, 4)

    def forward(self, x):
        y = torch.relu(self.a(x))
        b, c, h, w = y.shape
        tokens = y.permute(0, 2, 3, 1).reshape(b * h * w, c)
        idx = torch.arange(0, b * h * w, 3, device=x.device)
        return self.fc(tokens[idx, :])


def test_advanced_index_on_another_axis_lets_channels_through():
    m = randomize(Gather()).eval()
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 3, 8, 8),))
    assert small.a.out_channels == 8 and small.fc.in_features == 8


def _wn_net(kind: str, dim):
    a, b, c = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 12, 3, padding=1), nn.Conv2d(12, 4, 1)
    b = parametrizations.weight_norm(b, dim=dim) if kind == "parametrizations" else weight_norm(b, dim=dim)
    return randomize(nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), c)).eval()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("kind", ["parametrizations", "legacy"])
@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_prunes_exactly_and_round_trips(kind, dim, tmp_path):
    m = _wn_net(kind, dim)
    x = torch.randn(2, 3, 8, 8)
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    b = small.get_submodule("2")
    assert b.in_channels < 16 and b.out_channels < 12  # both axes of the weight-normed layer shrank
    norm = (b.parametrizations.weight.original0 if kind == "parametrizations" else b.weight_g)
    assert norm.requires_grad
    fxprune.save(small, tmp_path / "wn.fxp")
    again = fxprune.load(tmp_path / "wn.fxp")
    with torch.no_grad():
        assert torch.equal(again(x), small(x))
    again.train()
    again(x).sum().backward()
    assert all(p.grad is not None for p in again.parameters())


def test_other_parametrizations_are_pinned_with_a_named_reason():
    m = randomize(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                parametrizations.spectral_norm(nn.Conv2d(16, 12, 3, padding=1)), nn.ReLU(),
                                nn.Conv2d(12, 4, 1))).eval()
    small = fxprune.compile(m, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 3, 8, 8),))
    reasons = " ".join(b.reason for b in fxprune.report(small).barriers)
    assert "remove_parametrizations" in reasons and "_SpectralNorm" in reasons


@pytest.mark.parametrize("name", ["meta", "graph", "code", "forward_eval", "train_graph"])
def test_reserved_top_level_names_get_a_named_error(name):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            setattr(self, name, nn.Conv2d(8, 2, 1))

        def forward(self, x):
            return getattr(self, name)(self.a(x))

    with pytest.raises(fxprune.TraceError, match=f"`{name}`.*Rename"):
        fxprune.compile(M(), fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(1, 3, 4, 4),))


def test_reserved_names_are_fine_when_nested():
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Module()
            self.body.meta = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.head(torch.relu(self.body.meta(x)))

    small = fxprune.compile(randomize(Wrap()).eval(), fxprune.Plan(sparsity=0.5),
                            example_inputs=(torch.randn(1, 3, 4, 4),))
    assert small.body.meta.out_channels == 4
