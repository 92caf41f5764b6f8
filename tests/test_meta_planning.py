"""Planning without weights: a model built on the meta device is analysed and resolved from
shapes alone, and gives the same channel groups, cost and (random-criterion) resolution as the same
model with data; what needs data says so."""

from __future__ import annotations

import pytest
import torch
import torchvision

import fxprune
from fxprune.compiler import analyse
from fxprune.errors import ModelError, PlanError
from fxprune.graph.costmodel import macs_model, params_model

transformers = pytest.importorskip("transformers")


def _llama_config():
    return transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                    use_cache=False, bos_token_id=0, eos_token_id=0)


def _pair(build, example):
    torch.manual_seed(0)
    real = build().eval()
    with torch.device("meta"):
        meta = build().eval()
    return real, meta, example


CASES = {
    "llama": lambda: _pair(lambda: transformers.LlamaForCausalLM(_llama_config()), torch.randint(0, 128, (1, 16))),
    "resnet18": lambda: _pair(torchvision.models.resnet18, torch.randn(1, 3, 64, 64)),
}


def _groups(a):
    return sorted((g.key, len(g.classes), int(g.pinned.sum()), sorted(g.producers)) for g in a.cg.groups())


@pytest.mark.parametrize("name", sorted(CASES))
def test_meta_analysis_equals_real_analysis(name):
    real, meta, x = CASES[name]()
    assert all(p.device.type == "meta" for p in meta.parameters())
    ar, am = analyse(real, (x,)), analyse(meta, (x.to("meta"),))
    assert _groups(am) == _groups(ar)
    assert macs_model(am.cg, am.traced.eval_gm).dense == macs_model(ar.cg, ar.traced.eval_gm).dense
    assert params_model(am.cg, meta).dense == params_model(ar.cg, real).dense
    assert any("meta device" in n for n in am.notes)
    for plan in (fxprune.Plan(flops=0.5, criterion="random", seed=3), fxprune.Plan(params=0.7, criterion="random")):
        rm = fxprune.resolve(meta, plan, (x.to("meta"),))
        rr = fxprune.resolve(real, plan, (x,))
        assert rm.to_json() == rr.to_json()  # the same channels, chosen from shapes alone
    small = fxprune.compile(real, resolution=rm, example_inputs=(x,))  # the meta plan compiles on the real model
    assert fxprune.report(small).params_ratio == pytest.approx(0.7, abs=0.02)


def test_meta_model_refuses_what_needs_its_weights():
    _, meta, x = CASES["resnet18"]()
    ids = (x.to("meta"),)
    with pytest.raises(PlanError, match="criterion='l1' reads the weights.*meta device"):
        fxprune.resolve(meta, fxprune.Plan(sparsity=0.5, criterion="l1"), ids)
    with pytest.raises(PlanError, match="backend='ort' times the pruned model"):
        fxprune.resolve(meta, fxprune.Plan(latency=0.5, backend="ort", criterion="random"), ids)
    with pytest.raises(ModelError, match="meta device.*fxprune.resolve"):
        fxprune.compile(meta, fxprune.Plan(sparsity=0.5, criterion="random"), ids)
    half = torchvision.models.resnet18()
    half.fc = half.fc.to("meta")
    with pytest.raises(ModelError, match="tensor\\(s\\) on the meta device .*`fc.weight`"):
        fxprune.resolve(half, fxprune.Plan(sparsity=0.5, criterion="random"), (x,))
