"""The residual stream of pre-norm blocks is pruned exactly through LayerNorm and RMSNorm; the
pruned norms export to ONNX and survive .fxp files."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.graph.rules.norms import DenseLayerNorm


class PreNorm(nn.Module):
    def __init__(self, d: int = 32, rms: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(16, d)
        self.n1 = nn.RMSNorm(d) if rms else nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 64), nn.Linear(64, d)
        self.n2 = nn.LayerNorm(d)
        self.head = nn.Linear(d, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.fc2(F.gelu(self.fc1(self.n1(h))))
        return self.head(self.n2(h))


@pytest.mark.parametrize("rms", [False, True])
def test_residual_stream_through_norms_is_pruned_and_verified(tmp_path, rms: bool) -> None:
    torch.manual_seed(0)
    model = PreNorm(rms=rms).eval()
    with torch.no_grad():
        for m in (model.n1, model.n2):  # non-trivial affine parameters
            m.weight.uniform_(0.5, 1.5)
            if getattr(m, "bias", None) is not None:
                m.bias.normal_()
    x = torch.randn(2, 7, 16)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert small.embed.out_features < 32 and small.head.in_features == small.embed.out_features
    assert isinstance(small.n2, DenseLayerNorm) and small.n2.dense_count == 32
    assert (type(small.n1) is nn.RMSNorm) if rms else isinstance(small.n1, DenseLayerNorm)
    assert rep.macs_ratio < 0.35 and rep.max_abs_error <= 1e-5
    fxprune.save(small, tmp_path / "m.fxp")
    back = fxprune.load(tmp_path / "m.fxp")
    with torch.no_grad():
        torch.testing.assert_close(back(x), small(x))


def test_pruned_layer_norm_exports_to_onnx_with_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from fxprune.export import export_onnx

    torch.manual_seed(0)
    small = fxprune.compile(PreNorm().eval(), fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 7, 16),))
    out = export_onnx(small, (torch.randn(2, 7, 16),), tmp_path / "m.onnx")
    assert out.parity is not None and out.parity["ok"]


def _kept_rows(small_w: torch.Tensor, dense_w: torch.Tensor) -> list[int]:
    """Indices of the dense rows the pruned weight kept (matched by value)."""
    return [int((dense_w == row).all(1).nonzero()[0]) for row in small_w]


def test_native_layer_norm_is_a_plain_layer_norm_over_the_kept_channels() -> None:
    torch.manual_seed(0)
    model = PreNorm().eval()
    with torch.no_grad():
        for m in (model.n1, model.n2):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_()
    x = torch.randn(2, 7, 16)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5, layer_norm="native"), example_inputs=(x,))
    assert type(small.n1) is nn.LayerNorm and type(small.n2) is nn.LayerNorm
    keep = _kept_rows(small.embed.weight, model.embed.weight)
    assert small.n1.normalized_shape == (len(keep),) == (16,)
    hidden = _kept_rows(small.fc1.weight, model.fc1.weight[:, keep])
    # an independent reference: the dense weights sliced by hand, norms over the kept channels
    with torch.no_grad():
        h = model.embed(x)[..., keep]
        n1 = F.layer_norm(h, (len(keep),), model.n1.weight[keep], model.n1.bias[keep])
        mid = F.gelu(F.linear(n1, model.fc1.weight[hidden][:, keep], model.fc1.bias[hidden]))
        h = h + F.linear(mid, model.fc2.weight[keep][:, hidden], model.fc2.bias[keep])
        n2 = F.layer_norm(h, (len(keep),), model.n2.weight[keep], model.n2.bias[keep])
        ref = F.linear(n2, model.head.weight[:, keep], model.head.bias)
        torch.testing.assert_close(small(x), ref)
        exact = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
        assert (small(x) - exact(x)).abs().max() > 1e-3  # a different function from the exact form
    rep = fxprune.report(small)
    assert rep.max_abs_error <= 1e-5 and any("layer_norm='native'" in n and "fine-tune" in n for n in rep.notes)


def test_native_layer_norm_verification_is_not_vacuous() -> None:
    """The native model fails against the exact reference: the kept-statistics reference is what
    it passes, so a wrong native rewrite would be caught."""
    from fxprune.compiler import _verify, analyse
    from fxprune.errors import VerificationError

    torch.manual_seed(0)
    model = PreNorm().eval()
    x = torch.randn(2, 7, 16)
    plan = fxprune.Plan(sparsity=0.5, layer_norm="native")
    a = analyse(model, (x,))
    small = fxprune.compile(model, plan, analysis=a)
    id_kept = a.cg.id_kept(fxprune.compiler.resolve(model, plan, analysis=a).pruned_roots(a.cg))
    _verify(small, a.traced, id_kept, a.inputs, 1e-5, 1e-4, native_norms=True)
    with pytest.raises(VerificationError):
        _verify(small, a.traced, id_kept, a.inputs, 1e-5, 1e-4, native_norms=False)


def test_native_layer_norm_functional_form_and_bad_values() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.w, self.b = nn.Linear(8, 16), nn.Parameter(torch.rand(16) + 0.5), nn.Linear(16, 3)

        def forward(self, x):
            h = self.a(x)
            return self.b(h + F.layer_norm(h, (16,), self.w, None))

    torch.manual_seed(0)
    x = torch.randn(4, 8)
    small = fxprune.compile(Functional(), fxprune.Plan(sparsity=0.5, layer_norm="native"), example_inputs=(x,))
    targets = [n.target for n in small.graph.nodes if n.op == "call_function"]
    assert F.layer_norm in targets and fxprune.report(small).max_abs_error <= 1e-5
    with pytest.raises(fxprune.PlanError, match="layer_norm"):
        fxprune.Plan(layer_norm="kept")
    with pytest.raises(fxprune.PlanError, match="run capture"):
        fxprune.compile(PreNorm(), fxprune.Plan(layer_norm="native"), example_inputs=(torch.randn(2, 7, 16),),
                        capture="run")
