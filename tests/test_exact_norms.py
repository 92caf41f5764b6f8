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
