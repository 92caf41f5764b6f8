"""Attention is pruned exactly by whole heads or by the same head dims in every head.

Each model reads the attention from the model input (its q/k/v rows keep every input column) and
ends in its output projection (whose rows are never pruned), so the kept q/k/v rows and output
columns can be found by value. The reference is the dense model with the other rows and columns
zeroed: an independent account of what removing them means, compared with the pruned model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.errors import PlanError
from tests.conftest import compile_checked, randomize


def kept_rows(dense: torch.Tensor, small: torch.Tensor) -> list[int]:
    """Indices of ``dense``'s rows that ``small`` kept (random weights: rows are unique)."""
    out = []
    for row in small:
        hit = [i for i in range(dense.shape[0]) if torch.equal(dense[i], row)]
        assert len(hit) == 1, "a pruned row is not a row of the dense weight"
        out.append(hit[0])
    assert out == sorted(out)
    return out


def zeroed_reference(model: nn.Module, small: nn.Module, rows: list[str], columns: list[str]) -> nn.Module:
    """``model`` with the rows of the linears in ``rows`` and the input columns of those in
    ``columns`` that ``small`` dropped set to zero (bias entries of dropped rows too)."""
    import copy

    ref = copy.deepcopy(model)
    with torch.no_grad():
        for name in rows:
            d, s = ref.get_submodule(name), small.get_submodule(name)
            keep = kept_rows(d.weight, s.weight)
            drop = [i for i in range(d.weight.shape[0]) if i not in keep]
            d.weight[drop] = 0
            if d.bias is not None:
                d.bias[drop] = 0
        for name in columns:
            d, s = ref.get_submodule(name), small.get_submodule(name)
            keep = kept_rows(d.weight.t(), s.weight.t())
            drop = [i for i in range(d.weight.shape[1]) if i not in keep]
            d.weight[:, drop] = 0
    return ref


def heads_of(rows: list[int], head_dim: int) -> list[list[int]]:
    by_head: dict[int, list[int]] = {}
    for r in rows:
        by_head.setdefault(r // head_dim, []).append(r % head_dim)
    return list(by_head.values())


class PackedAttention(nn.Module):
    """timm's Attention: one qkv projection, ``reshape(B, N, 3, H, Dh).permute(...).unbind(0)``."""

    def __init__(self, dim: int = 32, heads: int = 4, out: int = 6, sdpa: bool = True) -> None:
        super().__init__()
        self.heads, self.head_dim, self.sdpa = heads, dim // heads, sdpa
        self.qkv, self.o = nn.Linear(dim, 3 * dim), nn.Linear(dim, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(-1) @ v
        return self.o(y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


@pytest.mark.parametrize("sdpa", [True, False])
@pytest.mark.parametrize("attention", ["heads", "head_dims"])
def test_packed_qkv_loses_whole_heads_or_the_same_dims_in_every_head(sdpa: bool, attention: str) -> None:
    torch.manual_seed(0)
    model = randomize(PackedAttention(sdpa=sdpa)).eval()
    x = torch.randn(2, 5, 32)
    small, rep = compile_checked(model, x, plan=fxprune.Plan(sparsity=0.5, attention=attention))
    rows = kept_rows(model.qkv.weight, small.qkv.weight)
    assert len(rows) == 48
    q_rows = [r for r in rows if r < 32]
    if attention == "heads":  # 2 of 4 heads, each whole, the same heads in q, k and v
        assert [len(h) for h in heads_of(q_rows, 8)] == [8, 8]
        assert "3, 2, 8" in small.code
    else:  # every head keeps the same 4 of its 8 dims
        dims = heads_of(q_rows, 8)
        assert len(dims) == 4 and all(d == dims[0] for d in dims) and len(dims[0]) == 4
        assert "3, 4, 4" in small.code
        if sdpa:
            assert "scale" in small.code  # the dense 1/sqrt(8) is kept
    assert [r - 32 for r in rows if 32 <= r < 64] == q_rows == [r - 64 for r in rows if r >= 64]
    ref = zeroed_reference(model, small, ["qkv"], ["o"])
    with torch.no_grad():
        x2 = torch.randn(3, 7, 32)  # another batch and sequence length
        torch.testing.assert_close(small(x2), ref(x2), atol=1e-5, rtol=1e-4)


class GroupedQueryAttention(nn.Module):
    """LLaMA's attention: H query heads share Hkv key/value heads (``enable_gqa`` or
    ``repeat_kv``), optionally with rotary embeddings from an ``inv_freq`` buffer."""

    def __init__(self, dim: int = 32, heads: int = 4, kv_heads: int = 2, out: int = 6, gqa: str = "sdpa",
                 rope: bool = False) -> None:
        super().__init__()
        self.h, self.hkv, self.d, self.gqa, self.rope = heads, kv_heads, dim // heads, gqa, rope
        self.q = nn.Linear(dim, heads * self.d)
        self.k, self.v = nn.Linear(dim, kv_heads * self.d), nn.Linear(dim, kv_heads * self.d)
        self.o = nn.Linear(heads * self.d, out)
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, self.d, 2).float() / self.d))

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.d // 2
        x1, x2 = x[..., :half], x[..., half:]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.h, self.d).transpose(1, 2)
        k = self.k(x).view(b, n, self.hkv, self.d).transpose(1, 2)
        v = self.v(x).view(b, n, self.hkv, self.d).transpose(1, 2)
        if self.rope:
            pos = torch.arange(n, dtype=torch.float32, device=x.device)
            freqs = pos[:, None] * self.inv_freq[None, :]
            emb = torch.cat([freqs, freqs], dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        if self.gqa == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        else:
            rep = self.h // self.hkv
            k = k[:, :, None].expand(b, self.hkv, rep, n, self.d).reshape(b, self.h, n, self.d)
            v = v[:, :, None].expand(b, self.hkv, rep, n, self.d).reshape(b, self.h, n, self.d)
            y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, n, self.h * self.d))


@pytest.mark.parametrize("gqa", ["sdpa", "repeat_kv"])
def test_grouped_query_attention_removes_a_kv_head_with_its_query_group(gqa: str) -> None:
    torch.manual_seed(0)
    model = randomize(GroupedQueryAttention(gqa=gqa)).eval()
    x = torch.randn(2, 5, 32)
    small, _ = compile_checked(model, x)
    kv = kept_rows(model.k.weight, small.k.weight)
    assert kv == kept_rows(model.v.weight, small.v.weight) and len(kv) == 8
    (kv_head,) = {r // 8 for r in kv}
    q_heads = sorted({r // 8 for r in kept_rows(model.q.weight, small.q.weight)})
    assert q_heads == [2 * kv_head, 2 * kv_head + 1]  # the group that reads that kv head
    ref = zeroed_reference(model, small, ["q", "k", "v"], ["o"])
    with torch.no_grad():
        torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["heads", "head_dims"])
def test_rotary_embeddings_keep_dim_pairs_together(attention: str) -> None:
    """Whole heads leave the rotary frequencies alone; head dims go as rotary pairs (i, i + d/2)
    with their frequency, the same in q and k and in every head."""
    torch.manual_seed(0)
    model = randomize(GroupedQueryAttention(dim=32, heads=4, kv_heads=4, rope=True)).eval()
    model.inv_freq.copy_(1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8))  # the true frequencies
    x = torch.randn(2, 6, 32)
    small, _ = compile_checked(model, x, plan=fxprune.Plan(sparsity=0.5, attention=attention))
    q = kept_rows(model.q.weight, small.q.weight)
    assert kept_rows(model.k.weight, small.k.weight) == q
    if attention == "heads":
        assert [len(h) for h in heads_of(q, 8)] == [8, 8]
        assert small.inv_freq.shape == (4,)
    else:
        dims = heads_of(q, 8)
        assert len(dims) == 4 and all(d == dims[0] for d in dims)
        assert all((i + 4) in dims[0] for i in dims[0] if i < 4) and all((i - 4) in dims[0] for i in dims[0] if i >= 4)
        kept_freqs = sorted({i % 4 for i in dims[0]})
        torch.testing.assert_close(small.inv_freq, model.inv_freq[kept_freqs])
    ref = zeroed_reference(model, small, ["q", "k", "v"], ["o"])
    with torch.no_grad():
        torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=1e-4)


class MHAClassifier(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, need_weights: bool = False) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, 5)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x, need_weights=self.need_weights)
        return self.head(y)


def test_multihead_attention_self_attention_loses_whole_heads() -> None:
    torch.manual_seed(0)
    model = randomize(MHAClassifier()).eval()
    x = torch.randn(2, 5, 32)
    small, _ = compile_checked(model, x)
    rows = kept_rows(model.attn.in_proj_weight, small.attn.in_proj_weight)
    q_rows = [r for r in rows if r < 32]
    assert [len(h) for h in heads_of(q_rows, 8)] == [8, 8]
    assert [r - 32 for r in rows if 32 <= r < 64] == q_rows
    out_rows = kept_rows(model.head.weight.t(), small.head.weight.t())
    ref = zeroed_reference(model, small, [], ["head"])
    with torch.no_grad():  # drop the removed heads: in_proj rows, out_proj columns
        drop = [i for i in range(96) if i not in rows]
        ref.attn.in_proj_weight[drop] = 0
        ref.attn.in_proj_bias[drop] = 0
        ref.attn.out_proj.weight[[i for i in range(32) if i not in out_rows]] = 0
        ref.attn.out_proj.bias[[i for i in range(32) if i not in out_rows]] = 0
        torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=1e-4)


def test_inlined_attention_groups_are_named_by_their_module() -> None:
    """The functional projections of an inlined MultiheadAttention key their groups by the
    parameter path, so overrides, ignore and attention='both' find them by module name."""
    torch.manual_seed(0)
    model = randomize(MHAClassifier()).eval()
    x = torch.randn(2, 5, 32)
    a = fxprune.analyse(model, (x,))
    assert "attn.in_proj_weight@0" in {g.key for g in a.cg.groups()}
    kept = fxprune.compile(model, fxprune.Plan(sparsity=0.5, overrides={"attn": 0.0}), example_inputs=(x,))
    assert kept.attn.in_proj_weight.shape == (96, 32)
    small, _ = compile_checked(model, x, plan=fxprune.Plan(sparsity=0.75, attention="both"))
    rows = kept_rows(model.attn.in_proj_weight, small.attn.in_proj_weight)
    dims = heads_of([r for r in rows if r < 32], 8)
    assert len(dims) == 2 and dims[0] == dims[1] and len(dims[0]) == 4


def test_multihead_attention_returning_weights_is_kept_whole() -> None:
    class Pre(MHAClassifier):
        def __init__(self):
            super().__init__(need_weights=True)
            self.pre = nn.Linear(32, 32)

        def forward(self, x):
            return super().forward(self.pre(x))

    torch.manual_seed(0)
    model = randomize(Pre()).eval()
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 5, 32),))
    assert small.attn.in_proj_weight.shape == (96, 32) and small.pre.out_features == 32
    assert any("MultiheadAttention" in b.op for b in fxprune.report(small).barriers)


def test_attention_dropout_does_not_fail_the_train_graph() -> None:
    class Drop(PackedAttention):
        def forward(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5 if self.training else 0.0)
            return self.o(y.transpose(1, 2).reshape(b, n, c))

    torch.manual_seed(0)
    small, rep = compile_checked(randomize(Drop()), torch.randn(2, 5, 32))
    assert small.qkv.out_features == 48 and rep.max_abs_error <= 1e-5


def test_attention_option_is_checked() -> None:
    with pytest.raises(PlanError, match="attention must be one of"):
        fxprune.Plan(attention="all")
    with pytest.raises(PlanError, match="attention='both' splits a sparsity"):
        fxprune.Plan(attention="both", flops=0.5)
    with pytest.raises(PlanError, match="one structure"):
        fxprune.analyse(PackedAttention().eval(), torch.randn(1, 3, 32), attention="both")
    with pytest.raises(PlanError, match="no resolution before compiling"):
        fxprune.resolve(PackedAttention().eval(), fxprune.Plan(attention="both"), torch.randn(1, 3, 32))
    a = fxprune.analyse(PackedAttention().eval(), torch.randn(1, 3, 32), attention="head_dims")
    with pytest.raises(PlanError, match="attention='head_dims'"):
        fxprune.compile(a.model, fxprune.Plan(sparsity=0.5), analysis=a)
    small = fxprune.compile(a.model, fxprune.Plan(sparsity=0.5, attention="head_dims"), analysis=a)
    assert "3, 4, 4" in small.code


@pytest.mark.parametrize("sdpa", [True, False])
def test_both_removes_whole_heads_then_the_same_dims_in_every_kept_head(sdpa: bool) -> None:
    """sparsity 0.75 keeps a quarter of the attention width: half the heads, and half the dims
    of each kept head; the result is the dense model with all other rows zeroed."""
    torch.manual_seed(0)
    model = randomize(PackedAttention(sdpa=sdpa)).eval()
    x = torch.randn(2, 5, 32)
    small, rep = compile_checked(model, x, plan=fxprune.Plan(sparsity=0.75, attention="both"))
    rows = kept_rows(model.qkv.weight, small.qkv.weight)
    q_rows = [r for r in rows if r < 32]
    dims = heads_of(q_rows, 8)
    assert len(dims) == 2 and dims[0] == dims[1] and len(dims[0]) == 4  # 2 of 4 heads, the same 4 of 8 dims
    assert [r - 32 for r in rows if 32 <= r < 64] == q_rows
    assert "3, 2, 4" in small.code
    ref = zeroed_reference(model, small, ["qkv"], ["o"])
    with torch.no_grad():
        x2 = torch.randn(3, 7, 32)
        torch.testing.assert_close(small(x2), ref(x2), atol=1e-5, rtol=1e-4)
    assert rep.macs_before == fxprune.report(fxprune.compile(model, fxprune.Plan(sparsity=0.0),
                                                             example_inputs=(x,))).macs_before
    assert any("attention='both'" in n for n in rep.notes)
    # the two-stage resolution, saved as JSON, gives the same model back
    res = fxprune.Resolution.from_json(fxprune.resolution_of(small).to_json())
    assert res.then is not None and res.plan.attention == "both"
    again = fxprune.compile(model, resolution=res, example_inputs=(x,))
    with torch.no_grad():
        torch.testing.assert_close(again(x2), small(x2), atol=0, rtol=0)
    one_stage = fxprune.Resolution(res.groups, res.plan)
    with pytest.raises(fxprune.ResolutionError, match="two stages"):
        fxprune.compile(model, resolution=one_stage, example_inputs=(x,))


def test_both_on_grouped_query_attention_with_rotary_embeddings() -> None:
    torch.manual_seed(0)
    model = randomize(GroupedQueryAttention(dim=32, heads=4, kv_heads=2, rope=True)).eval()
    model.inv_freq.copy_(1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8))
    x = torch.randn(2, 6, 32)
    small, _ = compile_checked(model, x, plan=fxprune.Plan(sparsity=0.75, attention="both"))
    assert len(kept_rows(model.k.weight, small.k.weight)) == 4  # one kv head left, 2 of its 4 rotary pairs
    assert len(kept_rows(model.v.weight, small.v.weight)) == 4
    q = kept_rows(model.q.weight, small.q.weight)
    dims = heads_of(q, 8)
    assert len(dims) == 2 and dims[0] == dims[1] and len(dims[0]) == 4  # one kv group, 2 rotary pairs
    assert all((i + 4) in dims[0] for i in dims[0] if i < 4)
    ref = zeroed_reference(model, small, ["q", "k", "v"], ["o"])
    with torch.no_grad():
        torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["heads", "head_dims"])
def test_multi_query_attention_prunes_query_heads_or_the_shared_dims(attention: str) -> None:
    """One key/value head read by every query head (``enable_gqa``): whole query heads go on
    their own (the shared head stays), or the same dims of q, k and v everywhere."""
    torch.manual_seed(0)
    model = randomize(GroupedQueryAttention(dim=32, heads=4, kv_heads=1)).eval()
    x = torch.randn(2, 6, 32)
    small, _ = compile_checked(model, x, plan=fxprune.Plan(sparsity=0.5, attention=attention))
    q, k = kept_rows(model.q.weight, small.q.weight), kept_rows(model.k.weight, small.k.weight)
    if attention == "heads":
        assert [len(h) for h in heads_of(q, 8)] == [8, 8] and len(k) == 8
    else:
        dims = heads_of(q, 8)
        assert len(dims) == 4 and all(d == dims[0] for d in dims) and k == dims[0]
    ref = zeroed_reference(model, small, ["q", "k", "v"], ["o"])
    with torch.no_grad():
        x2 = torch.randn(3, 5, 32)
        torch.testing.assert_close(small(x2), ref(x2), atol=1e-5, rtol=1e-4)


class ShiftedWindows(nn.Module):
    """Swin's channels-last plumbing: pad H and W, roll, a fresh mask tensor, un-roll, crop."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(3, c), nn.Linear(c, c), nn.Linear(c, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: B, H, W, 3
        h = self.inp(x)
        y = F.pad(h, (0, 0, 0, 1, 0, 1))
        y = torch.roll(y, shifts=(-1, -1), dims=(1, 2))
        mask = y.new_zeros(y.shape[1], y.shape[2])
        mask[:2] = 1.0
        y = self.mid(y) + mask[None, :, :, None]
        y = torch.roll(y, shifts=(1, 1), dims=(1, 2))[:, : x.shape[1], : x.shape[2]]
        return self.out(h + y)


def test_pad_of_spatial_axes_roll_and_fresh_tensors_pass_channels() -> None:
    torch.manual_seed(0)
    model = randomize(ShiftedWindows()).eval()
    small, rep = compile_checked(model, torch.randn(2, 5, 5, 3))
    assert small.inp.out_features == small.mid.out_features == 8  # residual stream through pad and roll
    keep = kept_rows(model.inp.weight, small.inp.weight)
    assert kept_rows(model.mid.weight[:, keep], small.mid.weight) == keep  # one class: the residual stream
    ref = zeroed_reference(model, small, ["inp"], ["out"])
    with torch.no_grad():
        drop = [i for i in range(16) if i not in keep]
        ref.mid.weight[drop] = 0
        ref.mid.bias[drop] = 0
        x = torch.randn(2, 5, 5, 3)
        torch.testing.assert_close(small(x), ref(x), atol=1e-5, rtol=1e-4)


def test_padding_or_rolling_the_channel_axis_keeps_it() -> None:
    class M(nn.Module):
        def __init__(self, how):
            super().__init__()
            self.a, self.b, self.how = nn.Linear(3, 8), nn.Linear(8, 2), how

        def forward(self, x):
            y = self.a(x)
            y = torch.roll(y, 1, dims=-1) if self.how == "roll" else F.pad(y, (0, 1))[..., :8]
            return self.b(y)

    for how in ("roll", "pad"):
        small, _ = compile_checked(randomize(M(how)), torch.randn(2, 5, 3), expect_pruned=False)
        assert small.a.out_features == 8


@pytest.mark.parametrize("attention", ["heads", "head_dims"])
def test_cost_model_counts_a_heads_fraction_once(attention: str) -> None:
    """The cost model at 0/1 keeps equals the pruned model's MACs: ``q @ k^T`` contracts the head
    dims that carry the output's head classes (counted twice, the heads' fraction was squared)."""
    from fxprune.graph.costmodel import macs_model

    torch.manual_seed(0)
    model = randomize(PackedAttention(sdpa=False)).eval()
    x = torch.randn(2, 5, 32)
    for plan in (fxprune.Plan(sparsity=0.5, attention=attention), fxprune.Plan(sparsity=0.25, attention=attention)):
        small = fxprune.compile(model, plan, example_inputs=(x,))
        rep = fxprune.report(small)
        a = fxprune.analyse(model, x, attention=attention)
        cm = macs_model(a.cg, a.traced.eval_gm)
        keep = a.cg.id_kept(fxprune.resolution_of(small).pruned_roots(a.cg))
        assert cm.evaluate(keep) == pytest.approx(rep.macs_after, rel=1e-9)
