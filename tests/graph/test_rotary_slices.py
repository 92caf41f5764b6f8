"""Slices of one axis of a factor that spans several axes: rotary embeddings split the head dim
of a ``(batch, heads, seq, head_dim)`` tensor (``x[..., :d/2]``, ``x[..., d/2:]``) whose channel
ids come from one projection viewed as heads x head_dim. The slice must cut the head-dim axis of
the ids, and the rewrite must renumber the bound along that axis alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxprune


class Rotary(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, seq: int = 6) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 5)
        angle = torch.arange(seq)[:, None] * torch.linspace(0.1, 1.0, self.hd // 2)[None]
        self.register_buffer("cos", torch.cat([angle.cos(), angle.cos()], -1))
        self.register_buffer("sin", torch.cat([angle.sin(), angle.sin()], -1))

    def forward(self, x):
        b, s, _ = x.shape
        h = self.q(x).view(b, s, self.heads, self.hd).transpose(1, 2)
        half = self.hd // 2
        rotated = torch.cat([-h[..., half:], h[..., :half]], -1)
        y = h * self.cos + rotated * self.sin
        return self.out(y.transpose(1, 2).reshape(b, s, -1))


@pytest.mark.parametrize("capture", ["fx", "export"])
def test_rotary_half_slices_are_exact(capture):
    torch.manual_seed(0)
    model = Rotary().eval()
    x = torch.randn(2, 6, 32)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,), capture=capture)
    rep = fxprune.report(small)
    assert rep.capture == capture
    assert rep.max_abs_error <= 1e-5 * max(1.0, rep.max_abs_reference)
    # the halves are sliced at the kept count of each half, not at a count over heads x head_dim
    assert small(x).shape == (2, 6, 5)


class PackedQKV(nn.Module):
    """Swin / ViT style: one projection viewed as (3, heads, head_dim), q, k, v picked by index."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, 5)

    def forward(self, x):
        b, s, c = x.shape
        qkv = self.qkv(x).reshape(b, s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.select(0, 0), qkv[1], torch.select(qkv, 0, 2)
        y = torch.softmax(q @ k.transpose(-2, -1), -1) @ v
        return self.out(y.transpose(1, 2).reshape(b, s, c))


@pytest.mark.parametrize("capture", ["fx", "export"])
def test_picking_q_k_v_from_a_packed_projection_is_exact(capture):
    """The index of q / k / v is renumbered along its own axis (it was counted over every axis of
    the factor: select(0, 2) became select(0, 64))."""
    torch.manual_seed(0)
    model = PackedQKV().eval()
    x = torch.randn(2, 6, 32)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,), capture=capture)
    rep = fxprune.report(small)
    assert rep.max_abs_error <= 1e-5 * max(1.0, rep.max_abs_reference)
    assert small(x).shape == (2, 6, 5)
