"""The channel-graph cost model equals count_macs / count_params of the physically pruned model."""

from __future__ import annotations

import pytest
import torch
import torchvision

import fxprune
from fxprune.compiler import analyse
from fxprune.graph.costmodel import macs_model, params_model
from fxprune.models.cifar import densenet40, resnet20
from tests.conftest import randomize

CASES = {
    "resnet18": lambda: torchvision.models.resnet18(),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
    "resnext50_32x4d": lambda: torchvision.models.resnext50_32x4d(),
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(),
    "vgg11": lambda: torchvision.models.vgg11(),
    "densenet40": densenet40,
    "resnet20": resnet20,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cost_model_is_exact_for_random_resolutions(name):
    model = randomize(CASES[name]()).eval()
    x = torch.randn(1, 3, 32 if name in ("densenet40", "resnet20") else 64, 64 if name not in ("densenet40", "resnet20") else 32)
    a = analyse(model, x)
    macs, params = macs_model(a.cg, a.traced.eval_gm), params_model(a.cg, model)
    ref = fxprune.compile(model, fxprune.Plan(sparsity=0.0), x, verify=False).meta["fxprune.report"]
    assert macs.dense == ref.macs_before and params.dense == ref.params_before
    for seed in range(2):
        small = fxprune.compile(model, fxprune.Plan(sparsity=0.3 + 0.3 * seed, criterion="random", seed=seed,
                                                    scope="global"), x, verify=False)
        r = small.meta["fxprune.report"]
        keep = a.cg.id_kept(small.meta["fxprune.resolution"].pruned_roots(a.cg)).astype(float)
        assert macs.evaluate(keep) == pytest.approx(r.macs_after, rel=1e-12)
        assert params.evaluate(keep) == pytest.approx(r.params_after, rel=1e-12)


def test_marginal_is_the_saving_of_one_channel():
    model = resnet20().eval()
    a = analyse(model, torch.randn(1, 3, 32, 32))
    macs = macs_model(a.cg, a.traced.eval_gm)
    keep = torch.ones(a.cg.uf.n, dtype=torch.float64).numpy()
    grad = macs.marginal(keep)
    g = next(g for g in a.cg.groups() if not g.pinned.all())
    c = g.classes[0]
    keep[c] = 0.0
    assert macs.dense - macs.evaluate(keep) == pytest.approx(grad[c])


class _Attention(torch.nn.Module):
    """Self-attention over tokens through SDPA, with ``kv`` key/value heads for ``heads`` query heads."""

    def __init__(self, c=8, heads=4, kv=1, dh=4):
        super().__init__()
        self.heads, self.kv, self.dh = heads, kv, dh
        self.q, self.o = torch.nn.Linear(c, heads * dh), torch.nn.Linear(heads * dh, c)
        self.k, self.v = torch.nn.Linear(c, kv * dh), torch.nn.Linear(c, kv * dh)

    def forward(self, x):
        n, t, _ = x.shape
        q = self.q(x).view(n, t, self.heads, self.dh).transpose(1, 2)
        k = self.k(x).view(n, t, self.kv, self.dh).transpose(1, 2)
        v = self.v(x).view(n, t, self.kv, self.dh).transpose(1, 2)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=self.kv < self.heads)
        return x + self.o(y.transpose(1, 2).reshape(n, t, self.heads * self.dh))


@pytest.mark.parametrize("kv", [1, 2, 4])
@pytest.mark.parametrize("attention", ["heads", "head_dims"])
def test_cost_model_counts_grouped_query_attention_by_the_query_heads_kept(kv, attention):
    """softmax(q k^T) v costs per query head: under grouped-query (and multi-query) attention,
    pruning query heads alone shrinks it although every key/value head is kept."""
    torch.manual_seed(0)
    model = randomize(_Attention(kv=kv)).eval()
    x = torch.randn(2, 16, 8)
    for seed in range(3):
        plan = fxprune.Plan(sparsity=0.5, criterion="random", seed=seed, scope="global", attention=attention)
        a = analyse(model, x, attention=attention)
        macs = macs_model(a.cg, a.traced.eval_gm)
        small = fxprune.compile(model, plan, x)
        r = small.meta["fxprune.report"]
        assert r.macs_after < r.macs_before
        keep = a.cg.id_kept(small.meta["fxprune.resolution"].pruned_roots(a.cg)).astype(float)
        assert macs.evaluate(keep) == pytest.approx(r.macs_after, rel=1e-12)
