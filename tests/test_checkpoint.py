"""Checkpoints on disk: scores read from safetensors shards, and a resolution applied shard by
shard (``prune_checkpoint``) into a HuggingFace checkpoint that ``from_pretrained`` loads and that
computes what ``fxprune.compile`` builds from the same resolution."""

from __future__ import annotations

import json

import pytest
import torch

import fxprune
from fxprune.errors import CheckpointError, PlanError
from fxprune.shards import INDEX, ShardedCheckpoint

transformers = pytest.importorskip("transformers")


def _config(**kw):
    base = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, use_cache=False, bos_token_id=0, eos_token_id=0)
    return transformers.LlamaConfig(**{**base, **kw})


def _checkpoint(tmp_path, config, seed=0):
    """A random LLaMA saved as several shards, the same model on meta, and token batches."""
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norm weights, so a wrong RMSNorm fold shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    dense = tmp_path / "dense"
    model.save_pretrained(dense, max_shard_size="60KB")
    with torch.device("meta"):
        meta = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(seed))
    return model, meta, dense, ids


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out.logits


@pytest.mark.parametrize("criterion", ["l1", "l2", "fpgm", "cpmc"])
def test_scores_read_from_shards_equal_the_in_memory_scores(tmp_path, criterion):
    model, meta, dense, ids = _checkpoint(tmp_path, _config())
    assert len(ShardedCheckpoint(dense).shards) > 2
    plan = fxprune.Plan(params=0.6, criterion=criterion)
    on_disk = fxprune.resolve(meta, plan, (ids.to("meta"),), weights=dense)
    in_memory = fxprune.resolve(model, plan, (ids,))
    assert on_disk.to_json() == in_memory.to_json()
    assert all(p.device.type == "meta" for p in meta.parameters())  # nothing materialised


PLANS = {
    "hidden+mlp": fxprune.Plan(params=0.6, criterion="l2", round_to=4, uniform=True),
    "heads": fxprune.Plan(sparsity=0.5, criterion="l1"),  # one kv head (and its query heads) of two per layer
}


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("plan_name", sorted(PLANS))
def test_streamed_checkpoint_loads_and_equals_compile(tmp_path, plan_name, tied):
    config = _config(tie_word_embeddings=tied)
    model, meta, dense, ids = _checkpoint(tmp_path, config)
    plan = PLANS[plan_name]
    resolution = fxprune.resolve(meta, plan, (ids.to("meta"),), weights=dense)
    out = tmp_path / "pruned"
    written = fxprune.prune_checkpoint(meta, resolution, dense, out, example_inputs=(ids.to("meta"),))
    assert len(written.shards) > 1 and (out / INDEX).is_file()

    small = fxprune.compile(model, resolution=resolution, example_inputs=(ids,))
    loaded = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in small.parameters())
    with torch.no_grad():
        for seed in range(3):
            x = torch.randint(0, config.vocab_size, tuple(ids.shape), generator=torch.Generator().manual_seed(seed))
            ref, got = _logits(small(x)), loaded(x).logits
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    new = json.loads((out / "config.json").read_text())
    kept = {n: tuple(p.shape) for n, p in small.named_parameters(remove_duplicate=False)}
    assert new["hidden_size"] == kept["model.embed_tokens.weight"][1]
    assert new["intermediate_size"] == kept["model.layers.0.mlp.gate_proj.weight"][0]
    assert new["head_dim"] == 16
    assert new["num_attention_heads"] == kept["model.layers.0.self_attn.q_proj.weight"][0] // 16
    assert new["num_key_value_heads"] == kept["model.layers.0.self_attn.k_proj.weight"][0] // 16
    assert new["rms_norm_eps"] == pytest.approx(1e-6 * 64 / new["hidden_size"])
    if plan_name == "heads":
        assert (new["num_attention_heads"], new["num_key_value_heads"]) == (2, 1)
    else:
        assert new["hidden_size"] < 64 and new["intermediate_size"] < 128
    assert (out / "generation_config.json").is_file()  # the checkpoint's other files come along


def test_written_shards_stay_within_the_shard_budget(tmp_path):
    model, meta, dense, ids = _checkpoint(tmp_path, _config())
    resolution = fxprune.resolve(meta, PLANS["hidden+mlp"], (ids.to("meta"),), weights=dense)
    out = tmp_path / "pruned"
    budget = 40_000
    written = fxprune.prune_checkpoint(meta, resolution, dense, out, example_inputs=(ids.to("meta"),),
                                       max_shard_bytes=budget)
    ckpt = ShardedCheckpoint(out)
    largest = max(ckpt.nbytes(n) for n in ckpt.keys())
    for shard in ckpt.shards:
        size = sum(ckpt.nbytes(n) for n in ckpt.in_shard(shard))
        assert size <= max(budget, largest)
    assert written.bytes_out == sum(ckpt.nbytes(n) for n in ckpt.keys())
    assert written.params_ratio == pytest.approx(0.6, abs=0.03)


def test_a_plan_the_config_cannot_express_is_refused_by_name(tmp_path):
    model, meta, dense, ids = _checkpoint(tmp_path, _config())
    x = (ids.to("meta"),)
    ragged = fxprune.resolve(meta, fxprune.Plan(params=0.6, criterion="l2", round_to=4), x, weights=dense)
    widths = {len(c.keep) for k, c in ragged.groups.items() if "gate_proj" in k}
    if len(widths) > 1:  # the fill-back gave the layers different widths
        with pytest.raises(CheckpointError, match="intermediate_size differs between layers.*uniform"):
            fxprune.prune_checkpoint(meta, ragged, dense, tmp_path / "a", example_inputs=x)
    odd = fxprune.resolve(meta, fxprune.Plan(params=0.6, criterion="l2", uniform=True), x, weights=dense)
    with pytest.raises(CheckpointError, match="not a multiple of the 4 attention heads.*round_to=4"):
        fxprune.prune_checkpoint(meta, odd, dense, tmp_path / "b", example_inputs=x)
    dims = fxprune.resolve(model, fxprune.Plan(sparsity=0.5, attention="head_dims", criterion="l1"), (ids,))
    with pytest.raises(CheckpointError, match="whole number of heads.*attention='heads'"):
        fxprune.prune_checkpoint(model, dims, dense, tmp_path / "c", example_inputs=(ids,))
    with pytest.raises(CheckpointError, match="the dense checkpoint's own directory"):
        fxprune.prune_checkpoint(meta, odd, dense, dense, example_inputs=x)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").glob("*.safetensors"))


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    _, meta, dense, ids = _checkpoint(tmp_path, _config())
    _, _, other, _ = _checkpoint(tmp_path / "o", _config(intermediate_size=96))
    x = (ids.to("meta"),)
    with pytest.raises(CheckpointError, match="mlp.*has shape \\[96, 64\\] but the model's is \\[128, 64\\]"):
        fxprune.resolve(meta, fxprune.Plan(params=0.6, criterion="l2"), x, weights=other)
    resolution = fxprune.resolve(meta, fxprune.Plan(sparsity=0.5, criterion="random"), x)
    with pytest.raises(CheckpointError, match="has shape .* but the model's is"):
        fxprune.prune_checkpoint(meta, resolution, other, tmp_path / "p", example_inputs=x)


def test_a_hostile_index_cannot_point_outside_its_directory(tmp_path):
    _, meta, dense, ids = _checkpoint(tmp_path, _config())
    index = json.loads((dense / INDEX).read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "../outside.safetensors"
    (dense / INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not plain \\*.safetensors file names"):
        ShardedCheckpoint(dense)
    index["weight_map"][name] = "missing.safetensors"
    (dense / INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="'missing.safetensors' is not a file in this directory"):
        ShardedCheckpoint(dense)
    (dense / INDEX).write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        ShardedCheckpoint(dense)


def test_meta_resolve_says_what_it_needs(tmp_path):
    model, meta, dense, ids = _checkpoint(tmp_path, _config())
    x = (ids.to("meta"),)
    with pytest.raises(PlanError, match="reads activations"):
        fxprune.resolve(meta, fxprune.Plan(sparsity=0.5, criterion="taylor"), x, weights=dense)
    with pytest.raises(PlanError, match="weights= is for a model on the meta device"):
        fxprune.resolve(model, fxprune.Plan(sparsity=0.5), (ids,), weights=dense)
    with pytest.raises(PlanError, match="uniform=True .* scope='local'"):
        fxprune.Plan(sparsity=0.5, scope="global", uniform=True)


def test_cli_resolve_then_apply_writes_a_loadable_checkpoint(tmp_path, capsys):
    from fxprune.cli import main

    model, _, dense, ids = _checkpoint(tmp_path, _config())
    res = tmp_path / "res.json"
    assert main(["resolve", "--model", f"hf-config:{dense}", "--weights", str(dense), "--params", "0.6",
                 "--round-to", "4", "--uniform", "--input-shape", "2,12", "--out", str(res)]) == 0
    out = tmp_path / "pruned"
    assert main(["apply", "--model", f"hf-config:{dense}", "--weights", str(dense), "--resolution", str(res),
                 "--out", str(out), "--input-shape", "2,12", "--max-shard-size", "50KB"]) == 0
    printed = capsys.readouterr().out
    assert "hidden_size" in printed and "from_pretrained" in printed
    resolution = fxprune.Resolution.from_json(res)
    small = fxprune.compile(model, resolution=resolution, example_inputs=(ids,))
    loaded = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, _logits(small(ids)), atol=1e-5, rtol=1e-4)
    assert main(["apply", "--model", f"hf-config:{dense}", "--weights", str(tmp_path / "nowhere"),
                 "--resolution", str(res), "--out", str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err
