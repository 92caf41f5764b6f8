"""One test per op rule: a tiny model that routes channels through the op, compiled at 50% and
verified against the masked dense model (compile raises if they differ)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from tests.conftest import compile_checked, randomize


def conv(cin, cout, k=3, **kw):
    return nn.Conv2d(cin, cout, k, padding=k // 2, **kw)


def group_widths(small):
    return {g.key: (g.before, g.after) for g in fxprune.report(small).groups}


X = torch.randn(2, 3, 12, 12)


# ---- pointwise -------------------------------------------------------------------------------
class Unary(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.act = conv(3, 16), conv(16, 8), nn.Hardswish()

    def forward(self, x):
        y = self.act(self.a(x))
        y = F.gelu(y).sigmoid().clamp(0.1, 0.9)
        return self.b(torch.tanh(y).contiguous().to(torch.float32))


def test_unary_ops_pass_channels_through():
    small, rep = compile_checked(randomize(Unary()), X)
    assert small.a.out_channels == 8 and small.b.in_channels == 8


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b, self.head = conv(3, 16), conv(16, 16), conv(16, 16), conv(16, 4)

    def forward(self, x):
        x = self.stem(x)
        y = x + self.a(x)
        z = y - self.b(y) * 0.5
        return self.head(torch.where(z > 0, z, y / 2))


def test_residual_add_ties_all_producers():
    small, _ = compile_checked(randomize(Residual()), X)
    assert small.stem.out_channels == small.a.out_channels == small.b.out_channels == 8
    assert len([g for g in fxprune.report(small).groups if g.before > g.pinned]) == 1


class LayerScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = conv(3, 16), conv(16, 4)
        self.gamma = nn.Parameter(torch.rand(16, 1, 1))
        self.beta = nn.Parameter(torch.rand(1, 16, 1, 1))

    def forward(self, x):
        return self.b(self.a(x) * self.gamma + self.beta)


def test_broadcast_parameters_are_sliced():
    small, _ = compile_checked(randomize(LayerScale()), X)
    assert small.gamma.shape == (8, 1, 1) and small.beta.shape == (1, 8, 1, 1)


def test_elementwise_with_a_computed_constant_pins_channels():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = conv(3, 16), conv(16, 16), conv(16, 4)

        def forward(self, x):
            y = self.b(self.a(x))
            return self.c(y + torch.ones(1, 16, 1, 1, device=x.device).cumsum(1))

    small, rep = compile_checked(randomize(M()), X)
    assert small.b.out_channels == 16 and small.a.out_channels == 8
    assert any("no channels" in b.reason for b in rep.barriers)


def test_tensor_constants_are_sliced_like_parameters():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, 16), conv(16, 4)

        def forward(self, x):  # the constant is created at trace time and stored in the graph
            return self.b(self.a(x) + torch.arange(16.0).view(1, 16, 1, 1))

    m = randomize(M())
    small, rep = compile_checked(m, X)
    assert small.a.out_channels == 8
    assert not any(k.startswith("_tensor_constant") for k in vars(m)), "tracing left constants on the model"


# ---- convolutions ---------------------------------------------------------------------------
class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = conv(3, 32)
        self.grouped = conv(32, 32, groups=4)
        self.dw = conv(32, 64, groups=32)  # depthwise, multiplier 2
        self.up = nn.ConvTranspose2d(64, 16, 2, stride=2)
        self.up_g = nn.ConvTranspose2d(16, 16, 3, padding=1, groups=2)
        self.head = conv(16, 4)

    def forward(self, x):
        return self.head(self.up_g(self.up(self.dw(self.grouped(self.a(x))))))


def test_grouped_depthwise_and_transposed_convs():
    small, _ = compile_checked(randomize(Convs()), X)
    assert small.grouped.groups == 4 and small.grouped.in_channels % 4 == 0
    assert small.dw.groups == small.dw.in_channels and small.dw.out_channels == 2 * small.dw.in_channels
    assert small.up.out_channels == 8 and small.up_g.groups == 2


def test_conv1d_conv3d_and_linear_on_last_axis():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv1d(4, 16, 3), nn.Conv1d(16, 4, 1)
            self.v1, self.v2 = nn.Conv3d(4, 8, 1), nn.Conv3d(8, 2, 1)
            self.l1, self.l2 = nn.Linear(6, 32), nn.Linear(32, 3)

        def forward(self, x, v, t):
            return self.c2(self.c1(x)).sum() + self.v2(self.v1(v)).sum() + self.l2(F.relu(self.l1(t)))

    small, _ = compile_checked(randomize(M()), torch.randn(2, 4, 10), torch.randn(1, 4, 3, 3, 3),
                               torch.randn(2, 5, 6))
    assert small.c1.out_channels == 8 and small.v1.out_channels == 4 and small.l1.out_features == 16


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 3, 3, 3) * 0.2)
        self.b1 = nn.Parameter(torch.randn(16) * 0.1)
        self.mean = nn.Parameter(torch.randn(16) * 0.1, requires_grad=False)
        self.var = nn.Parameter(torch.rand(16) + 0.5, requires_grad=False)
        self.w2 = nn.Parameter(torch.randn(10, 16) * 0.2)

    def forward(self, x):
        y = F.conv2d(x, self.w1, self.b1, padding=1)
        y = F.batch_norm(y, self.mean, self.var, training=False)
        return F.linear(y.mean((2, 3)), self.w2)


def test_functional_conv_linear_batch_norm_with_parameters():
    small, _ = compile_checked(Functional(), X)
    assert small.w1.shape == (8, 3, 3, 3) and small.w2.shape == (10, 8) and small.mean.shape == (8,)


# ---- normalisation --------------------------------------------------------------------------
def test_batch_and_instance_norm_shrink_with_channels():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.inorm, self.b = conv(3, 16), nn.BatchNorm2d(16), nn.InstanceNorm2d(16, affine=True), conv(16, 4)
            self.l, self.bn1, self.l2 = nn.Linear(12, 20), nn.BatchNorm1d(20), nn.Linear(20, 2)

        def forward(self, x):
            y = self.b(self.inorm(self.bn(self.a(x))))
            return y.mean() + self.l2(self.bn1(self.l(x[:, 0, 0])))

    small, _ = compile_checked(randomize(M()), X)
    assert small.bn.num_features == 8 and small.bn.running_var.shape == (8,) and small.inorm.num_features == 8
    assert small.bn1.num_features == 10


def test_layer_norm_over_channels_is_pruned_with_the_dense_count():
    """LayerNorm over the channel axis keeps the statistics of all D channels (the removed ones
    zero): DenseLayerNorm. Verification (pruned == masked dense) is the exactness check."""
    from fxprune.graph.rules.norms import DenseLayerNorm

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.ln, self.b, self.c = nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 32), nn.Linear(32, 4)

        def forward(self, x):
            return self.c(F.relu(self.b(self.ln(self.a(x)))))

    small, rep = compile_checked(randomize(M()), torch.randn(2, 5, 8))
    assert small.a.out_features == 8 and isinstance(small.ln, DenseLayerNorm)
    assert small.ln.normalized_shape == (8,) and small.ln.dense_count == 16 and small.ln.weight.shape == (8,)
    assert small.b.in_features == 8
    # a plain LayerNorm over the kept channels would not be the masked model
    x = torch.randn(3, 8)
    assert not torch.allclose(small.ln(x), F.layer_norm(x, (8,), small.ln.weight, small.ln.bias), atol=1e-3)


def test_dense_layer_norm_equals_layer_norm_with_zeroed_channels():
    from fxprune.graph.rules.norms import dense_layer_norm

    torch.manual_seed(0)
    x, w, b = torch.randn(4, 10, dtype=torch.float64) * 3 + 1, torch.randn(10, dtype=torch.float64), \
        torch.randn(10, dtype=torch.float64)
    kept = torch.tensor([0, 2, 3, 7])
    masked = torch.zeros_like(x)
    masked[:, kept] = x[:, kept]
    ref = F.layer_norm(masked, (10,), w, b)[:, kept]
    got = dense_layer_norm(x[:, kept], (4,), w[kept], b[kept], 1e-5, 10)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_rms_norm_over_channels_is_rescaled_exactly():
    """RMSNorm over K kept of D channels: weight * sqrt(D/K) and eps * D/K, a standard module."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.n, self.b = nn.Linear(8, 16), nn.RMSNorm(16, eps=1e-3), nn.Linear(16, 4)

        def forward(self, x):
            return self.b(self.n(self.a(x)))

    small, rep = compile_checked(randomize(M()), torch.randn(2, 5, 8))
    assert type(small.n) is nn.RMSNorm and small.n.normalized_shape == (8,)
    assert small.n.eps == pytest.approx(1e-3 * 16 / 8)


def test_rms_norm_without_weight_is_a_barrier():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.n, self.b = nn.Linear(8, 16), nn.RMSNorm(16, elementwise_affine=False), nn.Linear(16, 4)

        def forward(self, x):
            return self.b(self.n(self.a(x)))

    small, rep = compile_checked(randomize(M()), torch.randn(2, 5, 8), expect_pruned=False)
    assert small.a.out_features == 16
    assert any("RMSNorm without a weight" in b.reason for b in rep.barriers)


def test_functional_layer_norm_is_rewritten_to_the_dense_count():
    from fxprune.graph.rules.norms import dense_layer_norm

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)
            self.w, self.bias = nn.Parameter(torch.rand(16) + 0.5), nn.Parameter(torch.randn(16))

        def forward(self, x):
            return self.b(F.layer_norm(self.a(x), (16,), self.w, self.bias, 1e-4))

    small, rep = compile_checked(randomize(M()), torch.randn(2, 5, 8))
    assert small.a.out_features == 8 and small.w.shape == (8,)
    assert any(n.target is dense_layer_norm for n in small.graph.nodes)


def test_group_norm_prunes_whole_groups():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.gn, self.b = conv(3, 16), nn.GroupNorm(4, 16), conv(16, 4)
            self.c, self.gn1, self.d = conv(4, 8), nn.GroupNorm(8, 8), conv(8, 2)

        def forward(self, x):
            return self.d(self.gn1(self.c(self.b(self.gn(self.a(x))))))

    small, _ = compile_checked(randomize(M()), X)
    assert small.gn.num_groups == 2 and small.gn.num_channels == 8
    assert small.gn1.num_groups == small.gn1.num_channels == 4


def test_prelu_and_embedding():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.act, self.lin = nn.Embedding(10, 16), nn.PReLU(16), nn.Linear(16, 3)
            self.a, self.pre, self.b = conv(3, 16), nn.PReLU(16), conv(16, 2)

        def forward(self, idx, x):
            return self.lin(self.emb(idx)).sum() + self.b(self.pre(self.a(x))).sum()

    small, _ = compile_checked(randomize(M()), torch.tensor([[1, 2, 3]]), X)
    assert small.emb.embedding_dim == 8 and small.pre.num_parameters == 8


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_prunes_heads_as_self_attention_else_mlp_only(need_weights):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
            self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)

        def forward(self, x):
            x = x + self.attn(x, x, x, need_weights=need_weights)[0]
            return x + self.fc2(F.gelu(self.fc1(x)))

    small, rep = compile_checked(randomize(M()), torch.randn(2, 5, 16))
    assert small.fc1.out_features == 16
    # traced through as packed projection + SDPA: two of four heads go; returning weights: kept whole
    assert small.attn.in_proj_weight.shape[0] == (48 if need_weights else 24)


# ---- shape ops ----------------------------------------------------------------------------------
class ViewLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc, self.b = conv(3, 16), nn.Linear(16 * 4 * 4, 10), conv(16, 16)
        self.c = nn.Linear(16 * 16, 5)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(self.a(x), 4)
        out = self.fc(y.view(y.size(0), -1))
        z = self.b(self.a(x)[:, :, :4, :4]).reshape(2, 16, 16)  # literal channel count
        return out.sum() + self.c(z.flatten(1)).sum() + self.c(torch.flatten(z, 1)).sum()


def test_flatten_into_linear_and_view_literals():
    small, _ = compile_checked(randomize(ViewLinear()), X)
    assert small.fc.in_features == small.a.out_channels * 16
    assert small.c.in_features == small.b.out_channels * 16
    assert "reshape(2, 8, 16)" in small.code


def test_unflatten_permute_transpose_squeeze():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.fc1, self.fc2, self.b = conv(3, 16), nn.Linear(16, 24), nn.Linear(24, 16), conv(16, 2)
            self.un = nn.Unflatten(1, (24, 1))

        def forward(self, x):
            y = self.a(x).permute(0, 2, 3, 1)           # channels last
            y = self.fc2(F.relu(self.fc1(y)))           # linear over channels
            y = y.transpose(1, 3).transpose(2, 3)        # back to NCHW
            t = self.un(self.fc1(y.mean((2, 3)))).squeeze(-1).unsqueeze(2).unsqueeze(3)
            return self.b(y).sum() + t.sum()

    small, _ = compile_checked(randomize(M()), X)
    assert small.a.out_channels == 8 and small.fc1.out_features == 12
    assert small.un.unflattened_size == (12, 1)


class Tokens(nn.Module):
    """A ViT-style token path: cls token expanded and concatenated, positional embedding added."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, 16, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.pos = nn.Parameter(torch.randn(1, 10, 16))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        n = x.shape[0]
        t = self.proj(x).reshape(n, 16, 9).permute(0, 2, 1)
        t = torch.cat([self.cls.expand(n, -1, -1), t], dim=1) + self.pos
        return self.fc(t[:, 0])


def test_tokens_and_positional_embeddings_are_sliced():
    small, _ = compile_checked(randomize(Tokens()), X)
    assert small.cls.shape == (1, 1, 8) and small.pos.shape == (1, 10, 8)
    assert "reshape(getitem, 8, 9)" in small.code or "reshape(getitem_1, 8, 9)" in small.code or ", 8, 9)" in small.code


def test_expand_and_repeat():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, 16), conv(32, 4)

        def forward(self, x):
            g = self.a(x).mean((2, 3), keepdim=True)         # (N, 16, 1, 1)
            e = g.expand(2, 16, 12, 12)                       # literal channel count
            return self.b(torch.cat([e, self.a(x).repeat(1, 1, 1, 1)], 1))

    small, _ = compile_checked(randomize(M()), X)
    assert "expand(2, 8, 12, 12)" in small.code


class CatSplit(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = conv(3, 16), conv(3, 8)
        self.c, self.d = conv(24, 24), conv(12, 4)
        self.e = conv(8, 4)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        p, q = torch.split(self.c(y), [12, 12], dim=1)
        r, s, t = q.chunk(3, dim=1)
        u = torch.stack([r, s], 0).sum(0)
        return self.d(p + torch.cat([r, s, t], 1)) + self.e(torch.cat([u, t], 1))


def test_cat_split_chunk_stack():
    small, _ = compile_checked(randomize(CatSplit()), X)
    assert small.a.out_channels == 8 and small.b.out_channels == 4
    assert small.c.out_channels < 24


def test_chunk_becomes_split_when_halves_differ():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = conv(3, 16), conv(8, 4), conv(8, 4)

        def forward(self, x):
            p, q = self.a(x).chunk(2, dim=1)
            return self.b(p) + self.c(q)

    m = randomize(M())
    with torch.no_grad():  # make the first half much more important: the split must become uneven
        m.a.weight[:8] *= 10
    small, _ = compile_checked(m, X)
    assert small.b.in_channels != small.c.in_channels
    assert "split" in small.code


class Slicing(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = conv(3, 16), conv(6, 4), conv(10, 4)

    def forward(self, x):
        y = self.a(x)
        s = y[:, :6] + y[..., 3:9, :].mean() + y[:, None, 2].mean()
        n = torch.narrow(y, 1, 6, 10)
        return self.b(s) + self.c(n) + y.select(1, 0).sum() + y.index_select(2, torch.tensor([0, 1])).mean()


def test_slicing_narrow_select_rewrite_bounds():
    small, rep = compile_checked(randomize(Slicing()), X)
    assert small.b.in_channels + small.c.in_channels <= small.a.out_channels
    assert small.b.in_channels < 6 or small.c.in_channels < 10


# ---- spatial ------------------------------------------------------------------------------------
class Spatial(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = conv(3, 16), conv(16, 16)
        self.ps, self.c = nn.PixelShuffle(2), conv(4, 8)
        self.d = conv(8 * 4, 4)
        self.shuffle, self.e = nn.ChannelShuffle(4), conv(16, 4)

    def forward(self, x):
        y = F.max_pool2d(self.a(x), 2)
        y = F.interpolate(nn.functional.pad(y, (1, 1, 1, 1)), scale_factor=2.0, mode="nearest")
        y = F.adaptive_avg_pool2d(self.b(y), 6)
        z = self.c(self.ps(y))                              # 16 -> 4 channels, 2x spatial
        w = self.d(F.pixel_unshuffle(z, 2))                 # 8 -> 32 channels
        return w.sum() + self.e(self.shuffle(y)).sum()


def test_pooling_resize_pad_pixel_shuffle_channel_shuffle():
    small, _ = compile_checked(randomize(Spatial()), X)
    assert small.b.out_channels % 4 == 0 and small.c.in_channels * 4 == small.b.out_channels


class Shuffle(nn.Module):
    """ShuffleNetV2's channel shuffle written with view / transpose / view."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = conv(3, 8), conv(3, 8), conv(16, 4)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.c(y)


def test_channel_shuffle_view_transpose_view():
    small, _ = compile_checked(randomize(Shuffle()), X)
    assert small.a.out_channels == small.b.out_channels == 4


def test_reductions_over_spatial_prune_over_channels_pin():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = conv(3, 16), conv(16, 16), nn.Linear(16, 3)

        def forward(self, x):
            y = self.a(x)
            att = torch.sigmoid(y.mean(1, keepdim=True) + y.amax(1, keepdim=True))   # CBAM spatial attention
            z = self.b(y * att)
            return self.fc(z.mean((2, 3))) + z.softmax(dim=1).sum((2, 3))[:, :3]

    small, rep = compile_checked(randomize(M()), X, expect_pruned=False)
    assert small.a.out_channels == 16 and small.b.out_channels == 16
    assert any("over a channel axis" in b.reason for b in rep.barriers)


# ---- contractions ---------------------------------------------------------------------------------
class Attention(nn.Module):
    """Hand-written multi-head attention: q @ k^T, softmax, @ v, merge heads."""

    def __init__(self, dim=16, heads=2, sdpa=False):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, n, c = x.shape
        h = self.heads
        q, k, v = (f(x).reshape(b, n, h, c // h).transpose(1, 2) for f in (self.q, self.k, self.v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = (q @ k.transpose(-2, -1) * (8 ** -0.5)).softmax(-1) @ v
        return x + self.o(y.transpose(1, 2).reshape(b, n, c)).mean() + self.o(y.transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("sdpa", [False, True])
def test_attention_head_dims_prune_through_products(sdpa):
    m = nn.Sequential(nn.Linear(8, 16), Attention(sdpa=sdpa), nn.Linear(16, 3))
    small, rep = compile_checked(randomize(m), torch.randn(2, 5, 8), expect_pruned=True)
    attn = small.get_submodule("1")
    assert attn.q.out_features == attn.k.out_features < 16
    if sdpa:
        assert "scale" in small.code  # the default 1/sqrt(head_dim) is kept


def test_einsum_bmm_addmm():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 16), nn.Linear(6, 16)
            self.w = nn.Parameter(torch.randn(16, 8) * 0.3)
            self.bias = nn.Parameter(torch.randn(8) * 0.1)
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            s = torch.einsum("bnc,bmc->bnm", self.a(x), self.b(x))
            t = torch.bmm(self.a(x), self.b(x).transpose(1, 2))
            u = torch.addmm(self.bias, self.a(x)[:, 0], self.w)
            return s.sum() + t.sum() + self.out(u).sum()

    small, _ = compile_checked(randomize(M()), torch.randn(2, 3, 6))
    assert small.a.out_features == small.b.out_features == small.w.shape[0]
    # the columns of a parameter on the right of a matmul are output channels (HuggingFace's Conv1D)
    assert small.w.shape[1] == small.bias.shape[0] == small.out.in_features < 8


def test_size_read_used_as_a_value_pins_the_axis():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 16), nn.Linear(16, 2)

        def forward(self, x):
            y = self.a(x)
            return self.b(y * y.size(-1) ** -0.5)

    small, rep = compile_checked(randomize(M()), torch.randn(3, 4), expect_pruned=False)
    assert any("size of channel axis" in b.reason for b in rep.barriers)


def mystery(x):
    return x.flip(1)


torch.fx.wrap("mystery")


def test_unknown_function_is_a_barrier_listed_in_the_report():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = conv(3, 16), conv(16, 16), conv(16, 2)

        def forward(self, x):
            return self.c(mystery(self.b(self.a(x))))

    small, rep = compile_checked(randomize(M()), X, capture="fx")
    assert small.a.out_channels == 8 and small.b.out_channels == 16
    assert any(b.reason == "no rule for this op" and "mystery" in b.op for b in rep.barriers)
    # the default capture sees through the wrapped function with torch.export (flip: a barrier too)
    small, rep = compile_checked(randomize(M()), X)
    assert rep.capture == "export" and any("mystery" in n for n in rep.notes)
    assert small.a.out_channels == 8


def test_namedtuple_outputs():
    from collections import namedtuple

    Out = namedtuple("Out", ["main", "aux"])

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = conv(3, 16), conv(16, 2), conv(16, 3)

        def forward(self, x):
            y = self.a(x)
            return Out(self.b(y), self.c(y))

    small, _ = compile_checked(randomize(M()), X)
    out = small(X)
    assert out.main.shape == (2, 2, 12, 12) and out.aux.shape == (2, 3, 12, 12)


def test_mean_over_channels_is_rewritten_to_a_dense_count_sum():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, 16), conv(16, 4)

        def forward(self, x):
            y = self.a(x)
            return self.b(y * torch.sigmoid(y.mean(1, keepdim=True)))  # spatial gate from a channel mean

    small, _ = compile_checked(randomize(M()), X)
    assert small.a.out_channels == 8
    assert "sum" in small.code and "/ 16" in small.code


def test_normalize_transposed_attribute_unbind_and_1d_3d_pools():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 16), nn.Linear(16, 3)
            self.c1, self.c2 = nn.Conv1d(2, 8, 3), nn.Conv1d(8, 2, 1)
            self.v1, self.v2 = nn.Conv3d(2, 8, 1), nn.Conv3d(8, 2, 1)

        def forward(self, x, s, v):
            y = F.normalize(self.a(x), dim=-1)             # (B, 16)
            z = self.b(y.mT.T)                            # two transposes back
            p, q = torch.unbind(self.a(x).view(2, -1, 16), 0)
            t = self.c2(F.max_pool1d(self.c1(s), 2))
            w = self.v2(F.adaptive_avg_pool3d(self.v1(v), 1))
            return z.sum() + self.b(p + q).sum() + t.sum() + w.sum()

    small, _ = compile_checked(randomize(M()), torch.randn(2, 4), torch.randn(1, 2, 9), torch.randn(1, 2, 3, 3, 3))
    assert small.a.out_features == 8 and small.c1.out_channels == 4 and small.v1.out_channels == 4


def test_spatial_sizes_read_from_the_shape_do_not_pin_channels():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, 16), conv(16, 4)

        def forward(self, x):
            y = self.b(F.max_pool2d(self.a(x), 2))
            return F.interpolate(y, size=self.a(x).shape[-2:], mode="bilinear", align_corners=False)

    small, rep = compile_checked(randomize(M()), X)
    assert small.a.out_channels == 8 and not rep.barriers
