"""Property: for random architectures and random plans, the pruned model equals the masked dense
model (compile verifies and raises otherwise), is no larger, and runs in train mode too.

Architectures mix residual adds, concatenation, split/chunk, depthwise and grouped convolutions,
squeeze-excitation multiplications, channel shuffle, a channel-aligned module with two inputs
(AdaIN of the block input by a branch's statistics), integer and list channel indices
(``y[:, i]``, ``torch.select``, ``y[:, [i, j]]``), weight-normalised convolutions (both torch
APIs), pre-norm transformer blocks over the pixels as tokens (LayerNorm or RMSNorm, random head
counts, grouped-query attention through SDPA or ``repeat_kv``-style expansion, hand-written
softmax attention) pruned by whole heads or head dims, and a flatten -> linear head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import fxprune
from tests.conftest import assert_unchanged, randomize, snapshot

KINDS = ["conv", "residual", "cat", "split", "chunk", "depthwise", "grouped", "se", "shuffle", "aligned", "index",
         "weightnorm", "attention"]


def conv_bn(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU())


class Block(nn.Module):
    def __init__(self, kind: str, c: int, draw) -> None:
        super().__init__()
        self.kind = kind
        if kind == "conv":
            self.out = draw(st.integers(2, 24))
            self.f = conv_bn(c, self.out, draw(st.sampled_from([1, 3])))
        elif kind == "residual":
            self.out = c
            self.f = nn.Sequential(conv_bn(c, draw(st.integers(2, 16))), )
            self.g = nn.Conv2d(self.f[0][0].out_channels, c, 1)
        elif kind == "cat":
            a, b = draw(st.integers(1, 12)), draw(st.integers(1, 12))
            self.f, self.g = conv_bn(c, a), conv_bn(c, b, 1)
            self.out = a + b
        elif kind == "split":
            self.s = draw(st.integers(1, c - 1))
            self.f = conv_bn(c - self.s, draw(st.integers(1, 12)), 1)
            self.out = self.s + self.f[0].out_channels
        elif kind == "chunk":  # GLU-like gate
            self.out = c // 2
        elif kind == "depthwise":
            mult = draw(st.sampled_from([1, 2]))
            self.f = conv_bn(c, c * mult, 3, groups=c)
            self.out = c * mult
        elif kind == "grouped":
            g = 2 if c % 2 == 0 else 1
            self.out = g * draw(st.integers(1, 8))
            self.f = conv_bn(c, self.out, 3, groups=g)
        elif kind == "se":
            r = draw(st.integers(1, 8))
            self.f, self.g = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)
            self.out = c
        elif kind == "shuffle":
            self.groups = 2
            self.out = c
        elif kind == "index":
            self.out = draw(st.integers(2, 16))
            self.f = conv_bn(c, self.out, 1)
            self.i = draw(st.integers(-self.out, self.out - 1))
            self.j = draw(st.integers(0, self.out - 1))
            self.how = draw(st.sampled_from(["getitem", "select", "list"]))
        elif kind == "weightnorm":
            from torch.nn.utils import parametrizations, weight_norm

            self.out = draw(st.integers(2, 16))
            conv = nn.Conv2d(c, self.out, 3, padding=1)
            dim = draw(st.sampled_from([0, 1, None]))
            conv = (parametrizations.weight_norm if draw(st.booleans()) else weight_norm)(conv, dim=dim)
            self.f = nn.Sequential(conv, nn.ReLU())
        elif kind == "attention":
            self.out = c
            self.heads = draw(st.sampled_from([1, 2, 4]))
            self.kv = draw(st.sampled_from([k for k in (1, 2, 4) if self.heads % k == 0]))
            self.dh = 2 * draw(st.integers(1, 4))
            self.norm = nn.LayerNorm(c) if draw(st.booleans()) else nn.RMSNorm(c)
            self.q, self.o = nn.Linear(c, self.heads * self.dh), nn.Linear(self.heads * self.dh, c)
            self.k, self.v = nn.Linear(c, self.kv * self.dh), nn.Linear(c, self.kv * self.dh)
            self.how = draw(st.sampled_from(["sdpa", "repeat", "matmul"]))
        elif kind == "aligned":
            from fxprune.apps.artnet import AdaIN

            self.f, self.t = conv_bn(c, c, 1), AdaIN(alpha=draw(st.sampled_from([0.5, 1.0])))
            self.out = c

    def forward(self, x):
        k = self.kind
        if k == "conv" or k == "depthwise" or k == "grouped" or k == "weightnorm":
            return self.f(x)
        if k == "index":
            y = self.f(x)
            if self.how == "getitem":
                pick = y[:, self.i].unsqueeze(1)
            elif self.how == "select":
                pick = torch.select(y, 1, self.i).unsqueeze(1)
            else:
                pick = y[:, [self.i, self.j]].sum(1, keepdim=True)
            return y * torch.sigmoid(pick)
        if k == "residual":
            return F.relu(x + self.g(self.f(x)))
        if k == "cat":
            return torch.cat([self.f(x), self.g(x)], dim=1)
        if k == "split":
            a, b = torch.split(x, [self.s, x.shape[1] - self.s], dim=1)
            return torch.cat([F.relu(a), self.f(b)], dim=1)
        if k == "chunk":
            a, b = x.chunk(2, dim=1)
            return a * torch.sigmoid(b)
        if k == "se":
            return x * torch.sigmoid(self.g(F.relu(self.f(F.adaptive_avg_pool2d(x, 1)))))
        if k == "aligned":
            return self.t(x, self.f(x))
        if k == "attention":
            n, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)
            u = self.norm(t)
            q = self.q(u).view(n, h * w, self.heads, self.dh).transpose(1, 2)
            kk = self.k(u).view(n, h * w, self.kv, self.dh).transpose(1, 2)
            v = self.v(u).view(n, h * w, self.kv, self.dh).transpose(1, 2)
            if self.how == "sdpa":
                y = F.scaled_dot_product_attention(q, kk, v, enable_gqa=self.kv < self.heads)
            else:
                rep = self.heads // self.kv
                kk = kk[:, :, None].expand(n, self.kv, rep, h * w, self.dh).reshape(n, self.heads, h * w, self.dh)
                v = v[:, :, None].expand(n, self.kv, rep, h * w, self.dh).reshape(n, self.heads, h * w, self.dh)
                if self.how == "repeat":
                    y = F.scaled_dot_product_attention(q, kk, v)
                else:
                    y = (q @ kk.transpose(-2, -1) * self.dh ** -0.5).softmax(-1) @ v
            t = t + self.o(y.transpose(1, 2).reshape(n, h * w, self.heads * self.dh))
            return t.transpose(1, 2).reshape(n, c, h, w)
        if k == "shuffle":
            n, c, h, w = x.size()
            return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        raise AssertionError(k)


class RandomNet(nn.Module):
    def __init__(self, kinds: list[str], draw) -> None:
        super().__init__()
        c = draw(st.integers(4, 16))
        self.stem = conv_bn(3, c)
        blocks = []
        for kind in kinds:
            if kind == "chunk" and c % 2:
                kind = "conv"
            if kind == "split" and c < 2:
                kind = "conv"
            if kind == "shuffle" and c % 2:
                kind = "se"
            b = Block(kind, c, draw)
            blocks.append(b)
            c = b.out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c * 4, 5)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 2)
        return self.head(torch.flatten(y, 1))


@settings(max_examples=int(__import__("os").environ.get("FXPRUNE_PROPERTY_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_architectures_prune_exactly(data):
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6), label="blocks")
    torch.manual_seed(data.draw(st.integers(0, 1000), label="seed"))
    model = randomize(RandomNet(kinds, data.draw)).eval()
    plan = fxprune.Plan(
        sparsity=data.draw(st.floats(0.0, 0.9), label="sparsity"),
        criterion=data.draw(st.sampled_from(["l1", "l2", "random"]), label="criterion"),
        scope=data.draw(st.sampled_from(["local", "global"]), label="scope"),
        round_to=data.draw(st.sampled_from([1, 1, 2, 4]), label="round_to"),
        seed=data.draw(st.integers(0, 5), label="plan_seed"),
        attention=data.draw(st.sampled_from(["heads", "head_dims"]), label="attention"),
    )
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(model)
    small = fxprune.compile(model, plan, example_inputs=(x,))  # raises VerificationError on mismatch
    assert_unchanged(model, before)
    rep = fxprune.report(small)
    assert rep.max_abs_error <= 1e-4 * max(1.0, float(model(x).detach().abs().max()))
    assert rep.params_after <= rep.params_before and rep.macs_after <= rep.macs_before
    small.train()
    assert small(torch.randn(3, 3, 8, 8)).shape == (3, 5)


@settings(max_examples=int(__import__("os").environ.get("FXPRUNE_PROPERTY_EXAMPLES", "60")) // 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_architectures_gated_equals_finalized(data):
    """The soft pass: random 0/1 gates on random architectures give exactly the finalized model,
    and the cost model's MACs at those gates are the finalized model's MACs."""
    from fxprune.methods.gates import GatedModel

    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=5), label="blocks")
    torch.manual_seed(data.draw(st.integers(0, 1000), label="seed"))
    model = randomize(RandomNet(kinds, data.draw)).eval()
    x = torch.randn(2, 3, 8, 8)
    gated = GatedModel(model, x)
    keep = data.draw(st.floats(0.2, 1.0), label="keep")
    with torch.no_grad():
        mask = (torch.rand(gated.n_slots) < keep).float()
        mask[gated.pinned] = 1
        for i in range(len(gated.groups)):  # every group keeps a channel, as the finalized model must
            sl = gated.group_slice(i)
            if not mask[sl].any():
                mask[sl.start] = 1
        gated.mask.copy_(mask)
    small = gated.finalize().eval()  # may switch a gate back on so that no tensor is empty
    assert bool((gated.mask >= mask).all())
    with torch.no_grad():
        torch.testing.assert_close(small(x), gated(x), rtol=1e-4, atol=1e-5)
    assert float(gated.expected_macs().detach()) == pytest.approx(fxprune.report(small).macs_after, rel=1e-9)


@settings(max_examples=int(__import__("os").environ.get("FXPRUNE_PROPERTY_EXAMPLES", "60")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_transformer_stacks_prune_exactly(data):
    """Stacks with at least one transformer block, at a sparsity that removes something."""
    kinds = ["attention"] + data.draw(st.lists(st.sampled_from(["attention", "conv", "residual", "se"]), max_size=3),
                                      label="blocks")
    torch.manual_seed(data.draw(st.integers(0, 1000), label="seed"))
    model = randomize(RandomNet(kinds, data.draw)).eval()
    with torch.no_grad():  # non-trivial norm affines
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_()
    plan = fxprune.Plan(sparsity=data.draw(st.floats(0.3, 0.8), label="sparsity"),
                        scope=data.draw(st.sampled_from(["local", "global"]), label="scope"),
                        attention=data.draw(st.sampled_from(["heads", "head_dims"]), label="attention"))
    x = torch.randn(2, 3, 4, 4)
    small = fxprune.compile(model, plan, example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.max_abs_error <= 1e-4 * max(1.0, float(model(x).detach().abs().max()))
    assert rep.params_after < rep.params_before
    assert small(torch.randn(3, 3, 4, 4)).shape == (3, 5)
