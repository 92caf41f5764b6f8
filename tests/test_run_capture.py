"""The run capture: models whose forward sizes depend on values (top-k, NMS, detectors), pruned
by module surgery and verified layer call by layer call."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.errors import SerializationError, TraceError


class Picker(nn.Module):
    """A backbone, a functional-weight layer, then a value-dependent selection (like a
    detector's post-processing): fx cannot trace it and torch.export stops at the selection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.w3 = nn.Parameter(torch.randn(8, 24, 1, 1) * 0.2)  # used functionally
        self.score = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(F.conv2d(x, self.w3))
        s = self.score(x).flatten(1)
        k = int((s > s.mean()).sum()) // x.shape[0] + 1  # how many to keep depends on the values
        return torch.topk(s, k, dim=1).values


class WidthInCode(Picker):
    """As Picker, with conv1's width written into the forward as a literal (a ``view``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        b = h.shape[0]
        h = (h.view(b, 16, -1) * 1.5).view(h.shape)
        x = F.relu(self.conv2(h))
        x = F.relu(F.conv2d(x, self.w3))
        s = self.score(x).flatten(1)
        k = int((s > s.mean()).sum()) // x.shape[0] + 1
        return torch.topk(s, k, dim=1).values


def _kept_rows(small_w: torch.Tensor, dense_w: torch.Tensor, cols: torch.Tensor | None = None) -> list[int]:
    """Which rows of the dense weight the pruned weight kept (matched by value)."""
    d = dense_w if cols is None else dense_w[:, cols]
    out = []
    for row in small_w:
        hit = [i for i in range(d.shape[0]) if torch.equal(d[i], row)]
        assert len(hit) == 1
        out.append(hit[0])
    return out


def test_value_dependent_forward_is_captured_from_a_run_and_pruned_exactly() -> None:
    torch.manual_seed(0)
    model = Picker().eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 12, 12)
    with pytest.raises(TraceError):
        fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,), capture="export")
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.capture == "run" and rep.specialised == []
    assert type(small) is Picker and small is not model
    assert small.conv1.out_channels < 16 and small.conv2.out_channels < 24 and small.w3.shape[0] < 8
    assert isinstance(small.w3, nn.Parameter)
    assert rep.macs_ratio < 0.6 and rep.max_abs_error is not None
    # the caller's model is untouched and carries no hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    # independent reference: the dense model with the removed channels' filters zeroed
    # (relu(0) = 0, so a zeroed filter is a removed channel), on an input of another shape
    ref = copy.deepcopy(model)
    k1 = _kept_rows(small.conv1.weight, model.conv1.weight)
    k2 = _kept_rows(small.conv2.weight, model.conv2.weight, torch.tensor(k1))
    k3 = _kept_rows(small.w3, model.w3, torch.tensor(k2))
    with torch.no_grad():
        for w, b, kept in ((ref.conv1.weight, ref.conv1.bias, k1), (ref.conv2.weight, ref.conv2.bias, k2),
                           (ref.w3, None, k3)):
            dead = [i for i in range(w.shape[0]) if i not in kept]
            w[dead] = 0
            if b is not None:
                b[dead] = 0
        y = torch.randn(3, 3, 17, 9)
        out, want = small(y), ref(y)
    assert out.shape == want.shape  # the same value-dependent selection
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-4)


def test_width_written_in_the_forward_keeps_that_group_whole() -> None:
    torch.manual_seed(0)
    model = WidthInCode().eval()
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 3, 12, 12),))
    rep = fxprune.report(small)
    assert rep.capture == "run"
    assert small.conv1.out_channels == 16  # its width is a literal in forward: kept whole
    assert small.conv2.out_channels < 24  # the others are still pruned
    assert any("own forward" in b.reason for b in rep.barriers)
    small(torch.randn(1, 3, 10, 10))


def test_run_model_saves_its_layers_and_loads_onto_the_dense_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = Picker().eval()
    x = torch.randn(2, 3, 12, 12)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    fxprune.save(small, tmp_path / "m.fxp")
    with pytest.raises(SerializationError, match="into="):
        fxprune.load(tmp_path / "m.fxp")
    with pytest.raises(SerializationError, match="not of a"):
        fxprune.load(tmp_path / "m.fxp", into=nn.Linear(2, 2))
    dense = Picker().eval()  # other weights: the file's replace them where pruned
    back = fxprune.load(tmp_path / "m.fxp", into=dense)
    assert dense.conv1.out_channels == 16  # not modified
    assert type(back) is Picker and back.conv1.out_channels == small.conv1.out_channels
    assert fxprune.report(back).macs_ratio == fxprune.report(small).macs_ratio
    y = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(back(y), small(y))
    # the same channels again from the resolution alone
    fxprune.resolution_of(small).to_json(tmp_path / "r.json")
    again = fxprune.compile(model, resolution=fxprune.Resolution.from_json(tmp_path / "r.json"), example_inputs=(x,))
    with torch.no_grad():
        torch.testing.assert_close(again(y), small(y))


def test_fasterrcnn_whole_detector_with_a_list_of_images() -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
    imgs = [torch.rand(3, 320, 320), torch.rand(3, 288, 352)]
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(imgs,))
    rep = fxprune.report(small)
    assert rep.capture == "run" and type(small) is type(model)
    assert rep.macs_ratio < 0.6
    assert small.backbone.body["1"].block[0][0].out_channels < model.backbone.body["1"].block[0][0].out_channels
    with torch.no_grad():
        out = small([torch.rand(3, 256, 300)])  # another image size: the model's own forward
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_ssdlite_on_the_run_capture() -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    imgs = [torch.rand(3, 320, 320), torch.rand(3, 300, 340)]
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(imgs,), capture="run")
    rep = fxprune.report(small)
    assert rep.capture == "run" and rep.macs_ratio < 0.6
    with torch.no_grad():
        out = small([torch.rand(3, 200, 260)])
    assert out[0]["boxes"].shape[-1] == 4


def test_layers_the_recorded_run_never_called_are_named_in_a_warning() -> None:
    class TwoPaths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 4, 1), nn.Conv2d(16, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.a(x))
            return self.b(y) if x.sum() > 0 else self.c(y)

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="never used 2 parameter"):
        small = fxprune.compile(TwoPaths().eval(), fxprune.Plan(sparsity=0.5),
                                example_inputs=(torch.rand(1, 3, 4, 4),))
    assert any("c.weight" in n for n in fxprune.report(small).notes)
