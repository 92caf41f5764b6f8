"""Transformers from torchvision, timm and HuggingFace (built from configs, no download) lose
their residual stream, whole heads and MLP width, exactly; pruned ViT and BERT export to ONNX
with ONNX Runtime parity."""

from __future__ import annotations

import pytest
import torch

import fxprune
from fxprune.models import randomize_for_verification

transformers = pytest.importorskip("transformers")


def _bert(layers: int = 2):
    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=128)
    return randomize_for_verification(transformers.BertModel(config).eval())


def test_bert_heads_prune_and_its_output_is_the_residual_stream() -> None:
    torch.manual_seed(0)
    model, ids = _bert(), torch.randint(0, 100, (1, 16))
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(ids,))
    attn = small.encoder.layer[0].attention.self
    assert attn.query.weight.shape == (32, 64)  # two of four heads of 16 dims; the residual stays (it is the output)
    assert small(ids).last_hidden_state.shape == (1, 16, 64)
    wide = fxprune.report(small).macs_ratio

    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5, prune_outputs=True), example_inputs=(ids,))
    rep = fxprune.report(small)
    out = small(ids)
    assert out.last_hidden_state.shape == (1, 16, 32) and out.pooler_output.shape == (1, 32)
    assert attn.query.weight.shape[0] == 32 and small.embeddings.word_embeddings.weight.shape == (100, 32)
    assert rep.macs_ratio < 0.35 < wide and rep.max_abs_error <= 1e-4
    assert any("keeps 32 of its 64 channels" in n for n in rep.notes)


def test_llama_loses_kv_heads_with_their_query_groups() -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      use_cache=False, bos_token_id=0, eos_token_id=0)
    model = randomize_for_verification(transformers.LlamaForCausalLM(config).eval())
    ids = torch.randint(0, 128, (1, 16))
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(ids,))
    a = small.model.layers[0].self_attn
    assert a.q_proj.out_features == 32 and a.k_proj.out_features == a.v_proj.out_features == 16  # 2 q heads, 1 kv
    assert small.model.embed_tokens.weight.shape[1] == 32  # the residual stream, through every RMSNorm
    rep = fxprune.report(small)
    assert rep.macs_ratio < 0.45 and rep.max_abs_error <= 1e-4
    assert small(ids).logits.shape == (1, 16, 128)


@pytest.mark.parametrize("attention", ["heads", "head_dims"])
def test_timm_vit_residual_heads_and_mlp(attention: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = randomize_for_verification(timm.create_model("vit_tiny_patch16_224", img_size=64, depth=2).eval())
    x = torch.randn(1, 3, 64, 64)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5, attention=attention), example_inputs=(x,))
    assert small.patch_embed.proj.out_channels == 96 and small.cls_token.shape[-1] == 96
    # 3 heads of 64: one whole head goes (floor(0.5 * 3)), or 32 dims of every head
    assert small.blocks[0].attn.qkv.weight.shape == ((384, 96) if attention == "heads" else (288, 96))
    assert ("3, 2, 64" if attention == "heads" else "3, 3, 32") in small.code
    rep = fxprune.report(small)
    assert rep.macs_ratio < 0.32 and rep.max_abs_error <= 1e-4
    assert small(torch.randn(3, 3, 64, 64)).shape == (3, 1000)


def test_torchvision_vit_multihead_attention_is_pruned() -> None:
    import torchvision

    torch.manual_seed(0)
    model = randomize_for_verification(torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10).eval())
    x = torch.randn(2, 3, 32, 32)
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    assert small.conv_proj.out_channels == 32
    assert small.encoder.layers[0].self_attention.in_proj_weight.shape == (96, 32)  # 2 of 4 heads of 16
    rep = fxprune.report(small)
    assert rep.macs_ratio < 0.32 and rep.max_abs_error <= 1e-4


@pytest.mark.parametrize("which", ["vit", "bert"])
def test_pruned_vit_and_bert_export_to_onnx_with_parity(tmp_path, which: str) -> None:
    pytest.importorskip("onnxruntime")
    from fxprune.export import export_onnx

    torch.manual_seed(0)
    if which == "vit":
        config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=128)
        model, x = randomize_for_verification(transformers.ViTModel(config).eval()), torch.randn(2, 3, 32, 32)
    else:
        model, x = _bert(), torch.randint(0, 100, (2, 16))
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5, prune_outputs=True), example_inputs=(x,))
    assert fxprune.report(small).macs_ratio < 0.4
    out = export_onnx(small, (x,), tmp_path / f"{which}.onnx")
    assert out.parity is not None and out.parity["ok"]


def test_swin_shifted_windows_prune_the_residual_stream_and_heads() -> None:
    """timm's Swin through fx (roll, channels-last padding, fresh mask tensors pass channels) and
    torchvision's, whose window attention is one fx-wrapped function, through torch.export."""
    timm = pytest.importorskip("timm")
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    t = randomize_for_verification(timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4,
                                                     embed_dim=32, depths=(2, 2), num_heads=(2, 4)).eval())
    small = fxprune.compile(t, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.capture == "fx" and small.patch_embed.proj.out_channels == 16
    assert small.layers[0].blocks[0].attn.qkv.weight.shape == (48, 16)  # 1 of 2 heads of 16
    assert small.layers[0].blocks[0].attn.relative_position_bias_table.shape[1] == 1
    assert rep.macs_ratio < 0.32 and rep.max_abs_error <= 1e-4

    v = randomize_for_verification(SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4],
                                                   window_size=[4, 4], num_classes=10).eval())
    small = fxprune.compile(v, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    rep = fxprune.report(small)
    assert rep.capture == "export" and any("shifted_window_attention" in n for n in rep.notes)
    assert dict(small.named_parameters())["features.0.0.weight"].shape[0] == 16
    assert rep.macs_ratio < 0.32 and rep.max_abs_error <= 1e-4


def test_gpt2_with_its_default_cache_setting_compiles_without_a_wrapper() -> None:
    """``use_cache`` defaults to the config's True: the cache object is no exportable output and
    would pin every head, so it is fixed to False and said."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=128, n_positions=32, n_embd=64, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    assert config.use_cache
    model = randomize_for_verification(transformers.GPT2LMHeadModel(config).eval())
    ids = torch.randint(0, 128, (1, 16))
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(ids,))
    rep = fxprune.report(small)
    assert any(n.startswith("use_cache fixed to False") for n in rep.notes)
    assert small.transformer.h[0].attn.c_attn.weight.shape == (32, 96)  # residual 32, 2 of 4 heads x3
    assert rep.macs_ratio < 0.35 and rep.max_abs_error <= 1e-4
    assert small(ids).logits.shape == (1, 16, 128)
    # its Conv1D projections (addmm on a parameter) are keyed by module, so attention="both" finds them
    both = fxprune.compile(model, fxprune.Plan(sparsity=0.75, attention="both"), example_inputs=(ids,))
    c_attn = both.transformer.h[0].attn.c_attn.weight
    assert c_attn.shape[1] < 3 * 2 * 16  # 2 of 4 heads (whole heads alone: 96 columns), then head dims
    assert fxprune.report(both).max_abs_error <= 1e-4
