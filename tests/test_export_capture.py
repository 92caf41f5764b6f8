"""The torch.export capture path: models fx cannot trace compile, verify and keep their names."""

import pytest
import torch
import torchvision
import torch.nn.functional as F
from torch import nn

import fxprune
from fxprune.capture.export import ShapeSpecialisationError


class ShapeBranchVGG(nn.Module):
    """A CIFAR-style VGG whose forward branches on the input size (fx cannot trace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        h = x.shape[-1]
        y = self.features(x)
        if h == 16:
            y = self.pool(y)
        return self.fc(y.flatten(1))


class ImageList(nn.Module):
    """A loop over a list of images (as detectors do) and a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, images):
        feats = [torch.relu(self.conv(img[None])) for img in images]
        return {"out": torch.cat([self.head(f) for f in feats])}


def _compile(model, inputs, **kw):
    return fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=inputs, **kw)


def test_auto_falls_back_to_export_when_fx_cannot_trace_and_refuses_other_shapes(tmp_path):
    torch.manual_seed(0)
    model = ShapeBranchVGG().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(fxprune.TraceError):
        _compile(model, (x,), capture="fx")
    small = _compile(model, (x,))
    rep = fxprune.report(small)
    assert rep.capture == "export"
    assert rep.specialised == ["x: shape (2, 3, 16, 16)"]
    assert rep.macs_ratio < 0.6
    assert rep.max_abs_error is not None and rep.max_abs_error <= 1e-4 * max(rep.max_abs_reference, 1.0)
    # original module names and state-dict keys survive
    assert isinstance(small.features[0], nn.Conv2d) and small.features[0].out_channels < 16
    assert set(small.state_dict()) <= set(model.state_dict())
    assert model.features[0].out_channels == 16  # the caller's model is untouched
    with pytest.raises(ShapeSpecialisationError, match=r"\(2, 3, 16, 16\)"):
        small(torch.randn(3, 3, 16, 16))
    fxprune.save(small, tmp_path / "small.fxp")  # the safe format loads the input guards
    loaded = fxprune.load(tmp_path / "small.fxp")
    assert torch.allclose(loaded(x), small(x))
    with pytest.raises(ShapeSpecialisationError):
        loaded(torch.randn(2, 3, 32, 32))
    small.train()
    small(x).sum().backward()  # trainable
    assert small.features[0].weight.grad is not None


def test_export_captured_model_prunes_again_also_after_loading(tmp_path):
    """The input guards stay one call each when fx traces the pruned model (or its .fxp copy)
    again: a second compile prunes further and still refuses other shapes."""
    torch.manual_seed(0)
    model = ShapeBranchVGG().eval()
    x = torch.randn(2, 3, 16, 16)
    small = _compile(model, (x,))
    fxprune.save(small, tmp_path / "small.fxp")
    for first in (small, fxprune.load(tmp_path / "small.fxp")):
        again = _compile(first, (x,))
        rep = fxprune.report(again)
        assert rep.capture == "fx" and rep.macs_ratio < 0.6 and rep.max_abs_error <= 1e-4
        assert again.get_submodule("features.0").out_channels < first.get_submodule("features.0").out_channels
        with pytest.raises(ShapeSpecialisationError):
            again(torch.randn(3, 3, 16, 16))


def test_list_of_images_and_dict_output():
    torch.manual_seed(0)
    model = ImageList().eval()
    imgs = [torch.randn(3, 12, 12), torch.randn(3, 12, 12)]
    small = _compile(model, ([imgs[0], imgs[1]],))
    rep = fxprune.report(small)
    assert rep.capture == "export" and small.conv.out_channels < 8
    out = small(imgs)
    assert set(out) == {"out"} and out["out"].shape == (2, 4, 12, 12)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_export_path_agrees_with_fx(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    reps = {cap: fxprune.report(_compile(model, (x,), capture=cap)) for cap in ("fx", "export")}
    assert reps["export"].capture == "export" and reps["fx"].capture == "fx"
    assert reps["export"].macs_ratio == pytest.approx(reps["fx"].macs_ratio, rel=1e-9)
    assert reps["export"].params_after == reps["fx"].params_after


def test_flag_fixed_to_default_on_export_path():
    class Flagged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 12), nn.Linear(12, 3)

        def forward(self, x, return_features=False):
            h = torch.relu(self.a(x))
            return h if return_features else self.b(h)

    small = _compile(Flagged().eval(), (torch.randn(4, 6),), capture="export")
    rep = fxprune.report(small)
    assert rep.fixed_arguments == {"return_features": "False"}
    assert small(torch.randn(4, 6)).shape == (4, 3)
    with pytest.raises(ShapeSpecialisationError, match="return_features"):
        small(torch.randn(4, 6), return_features=True)


def test_unknown_capture_is_refused():
    with pytest.raises(fxprune.PlanError, match="capture"):
        _compile(nn.Linear(3, 3), (torch.randn(1, 3),), capture="dynamo")


def test_einops_vit_compiles_through_export():
    from einops import rearrange, repeat

    class EinopsViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Linear(48, 32)
            self.cls = nn.Parameter(torch.randn(1, 1, 32))
            self.norm = nn.LayerNorm(32)
            self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
            self.head = nn.Linear(32, 5)

        def forward(self, x):
            x = self.patch(rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4))
            x = torch.cat([repeat(self.cls, "1 1 d -> b 1 d", b=x.shape[0]), x], 1)
            x = x + self.mlp(self.norm(x))
            return self.head(x[:, 0])

    torch.manual_seed(0)
    model = EinopsViT().eval()
    small = _compile(model, (torch.randn(2, 3, 16, 16),))
    rep = fxprune.report(small)
    assert rep.capture == "export"
    assert small.mlp[0].out_features < 64 and rep.macs_ratio < 0.8


def test_huggingface_bert_compiles_without_a_wrapper():
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128)
    model = transformers.BertModel(config).eval()
    ids = torch.randint(0, 100, (1, 16))
    small = _compile(model, (ids,))
    rep = fxprune.report(small)
    assert rep.capture == "export" and rep.macs_ratio < 0.8
    assert small.encoder.layer[0].intermediate.dense.weight.shape[0] < 128  # original state-dict names
    out = small(ids)
    assert type(out).__name__ == type(model(ids)).__name__  # the output dataclass is kept
    assert out.last_hidden_state.shape == (1, 16, 64)


def test_huggingface_gpt2_prunes_its_conv1d_layers():
    """GPT-2's ``Conv1D`` is ``addmm(bias, x, W)`` with ``W`` (in, out): its columns are prunable
    output channels (they were not: the model came back at 1.00 of its MACs)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=128, n_positions=32, n_embd=64, n_layer=2, n_head=4, use_cache=False,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 128, (1, 16))
    small = _compile(model, (ids,))
    rep = fxprune.report(small)
    assert rep.capture == "export" and rep.macs_ratio < 0.8
    w = small.transformer.h[0].mlp.c_fc.weight  # Conv1D: (in, out); names kept
    assert w.shape[1] < 256  # columns (its outputs) removed
    assert w.shape[0] < 64  # rows too: the residual stream passes its LayerNorms exactly
    assert small(ids).logits.shape == (1, 16, 128)


def test_huggingface_llama_with_rotary_embeddings_and_gqa():
    """LLaMA: rotary halves of the head dim, grouped-query attention, RMSNorm written out."""
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      use_cache=False, bos_token_id=0, eos_token_id=0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 128, (1, 16))
    small = _compile(model, (ids,))
    rep = fxprune.report(small)
    assert rep.capture == "export" and rep.macs_ratio < 0.8
    assert small.model.layers[0].mlp.gate_proj.out_features < 128
    assert small(ids).logits.shape == (1, 16, 128)


class SlicedMask(nn.Module):
    """Swin's shifted-window mask: a zero tensor filled slice by slice, in place."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        mask = x.new_zeros(x.shape[-2:])
        mask[: x.shape[-2] // 2, :] = 1.0
        mask[:, -1:] += 2.0
        return self.head(self.conv(x) * mask)


def test_in_place_writes_into_slices_are_kept():
    """fx counts every method call as pure: dead-code elimination dropped ``fill_`` on a slice
    (whose result is unused; its effect is on the tensor sliced), and Swin's capture was wrong."""
    torch.manual_seed(0)
    model = SlicedMask().eval()
    x = torch.randn(1, 3, 6, 6)
    small = _compile(model, (x,), capture="export")
    rep = fxprune.report(small)
    assert rep.capture == "export" and small.conv.out_channels < 8
    assert rep.max_abs_error <= 1e-5 * max(1.0, rep.max_abs_reference)


def test_export_path_model_exports_to_onnx_and_compiles(tmp_path):
    """The pruned model of the export path goes to ONNX (batch fixed: its graph is specialised;
    a dynamic batch is refused with the reason) and through torch.compile."""
    from fxprune.export.onnx import export_onnx

    torch.manual_seed(0)
    model = ShapeBranchVGG().eval()
    x = torch.randn(2, 3, 16, 16)
    small = _compile(model, (x,))
    assert fxprune.report(small).capture == "export"
    exp = export_onnx(small, (x,), tmp_path / "small.onnx")
    assert not exp.dynamic_batch and exp.parity["ok"]
    with pytest.raises(fxprune.ExportError, match="specialised"):
        export_onnx(small, (x,), tmp_path / "dyn.onnx", dynamic_batch=True)
    compiled = torch.compile(small, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x), small(x), atol=1e-6)


class TrainBranch(nn.Module):
    """Reads ``self.training`` in a traced-through forward (dropout, and a branch), and its size
    branch forces the export path: the train graph is captured and verified too."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = F.dropout(y, 0.3, training=self.training)
        if self.training:
            y = y * 0.5
        if x.shape[-1] > 4:
            y = y.mean((2, 3))
        return self.fc(y)


def test_export_path_captures_and_verifies_the_train_graph():
    torch.manual_seed(0)
    model = TrainBranch().eval()
    x = torch.randn(4, 3, 8, 8)
    small = _compile(model, (x,))
    rep = fxprune.report(small)
    assert rep.capture == "export" and rep.train_graph and small.conv.out_channels < 16
    small.train()
    torch.manual_seed(1)
    a = small(x)
    small.eval()
    b = small(x)
    assert a.shape == b.shape and not torch.allclose(a, b)  # the train graph runs in train mode
    assert not model.training  # the caller's model keeps its mode
