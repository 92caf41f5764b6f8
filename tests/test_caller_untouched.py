"""``compile`` never changes the caller's model: not while compiling, not when the pruned model
trains, not when it is saved. Checked on a zoo of torchvision and timm families (timm's
BatchNormAct layers are traced through and bake ``training=True`` into ``F.batch_norm`` in the
train graph) and on hand-written models that write to their own state in ``forward``."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import fxprune

timm = pytest.importorskip("timm")


def full_state(model: nn.Module) -> dict:
    """Everything a user could notice: tensor bits, flags, requires_grad, grads, hooks, attributes."""
    state = {}
    for k, v in model.state_dict(keep_vars=True).items():
        t = v.detach().contiguous()
        state[f"tensor:{k}"] = (t.dtype, tuple(t.shape), t.reshape(-1).view(torch.uint8).clone())
    for name, m in model.named_modules():
        state[f"training:{name}"] = m.training
        state[f"dict:{name}"] = sorted(vars(m))
        state[f"hooks:{name}"] = [len(getattr(m, h)) for h in sorted(vars(m)) if "hook" in h and isinstance(getattr(m, h), dict)]
    for name, p in model.named_parameters():
        state[f"requires_grad:{name}"] = p.requires_grad
        state[f"grad:{name}"] = None if p.grad is None else p.grad.clone()
    return state


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys(), sorted(set(before) ^ set(after))[:5]
    for k in before:
        a, b = before[k], after[k]
        if isinstance(a, tuple) and len(a) == 3 and isinstance(a[2], torch.Tensor):
            assert a[:2] == b[:2] and torch.equal(a[2], b[2]), f"{k} changed"
        elif isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b), f"{k} changed"
        else:
            assert a == b, f"{k} changed: {a!r} -> {b!r}"


def _check(model: nn.Module, x: torch.Tensor, tmp_path, plan=None, save=True) -> nn.Module:
    before = full_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = fxprune.compile(model, plan or fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    assert_same(before, full_state(model))
    small.train()
    opt = torch.optim.SGD(small.parameters(), lr=0.1)
    out = small(torch.cat([x, x.flip(0)]))
    loss = sum(o.float().pow(2).mean() for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor))
    loss.backward()
    opt.step()
    assert_same(before, full_state(model))
    small.eval()
    if save:
        fxprune.save(small, tmp_path / "m.fxp")
        fxprune.load(tmp_path / "m.fxp")
    else:
        with pytest.raises(fxprune.SerializationError, match="TorchScript"):
            fxprune.save(small, tmp_path / "m.fxp")
    assert_same(before, full_state(model))
    return small


TORCHVISION = ["resnet18", "mobilenet_v3_small", "googlenet", "efficientnet_b0"]
TIMM = ["lcnet_050", "ghostnet_100", "efficientnet_b0", "mobilenetv3_small_050", "regnetx_002", "convnext_atto"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_caller_untouched(name, tmp_path):
    m = torchvision.models.get_model(name, weights=None, **({"aux_logits": True, "init_weights": True}
                                                            if name == "googlenet" else {})).eval()
    _check(m, torch.randn(2, 3, 64, 64), tmp_path)


@pytest.mark.parametrize("name", TIMM)
def test_timm_caller_untouched(name, tmp_path):
    m = timm.create_model(name, pretrained=False).eval()
    _check(m, torch.randn(2, 3, 64, 64), tmp_path)


def test_timm_bn_act_in_train_mode_caller(tmp_path):
    """A caller's model in train mode: the eval and train graphs both run, neither may write."""
    m = timm.create_model("lcnet_050", pretrained=False).train()
    _check(m, torch.randn(2, 3, 64, 64), tmp_path)


class Counting(nn.Module):
    """Writes to its own state in forward: a buffer updated in place and a Python counter."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)
        self.register_buffer("seen", torch.zeros(()))
        self.register_buffer("ema", torch.zeros(8))

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        self.seen.add_(1)
        self.ema.mul_(0.9).add_(0.1 * y.detach().mean((0, 2, 3)))
        if self.training:
            y = nn.functional.batch_norm(y, self.ema, torch.ones_like(self.ema), training=True)
        return self.head(y)


def test_forward_that_writes_its_state(tmp_path):
    _check(Counting().eval(), torch.randn(2, 3, 8, 8), tmp_path)


def test_input_written_in_place_is_not_changed():
    class Inplace(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            x.mul_(2)
            return self.b(torch.relu(self.a(x)))

    x = torch.randn(1, 3, 4, 4)
    x0 = x.clone()
    fxprune.compile(Inplace(), fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    assert torch.equal(x, x0)


class Scripted(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.s = torch.jit.script(nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU()))
        self.b = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.b(self.s(self.a(x)))


def test_scripted_submodule_is_copied_not_shared(tmp_path):
    m = Scripted().eval()
    x = torch.randn(1, 3, 8, 8)
    small = _check(m, x, tmp_path, save=False)
    assert not m.s.training
    caller = {id(t) for t in list(m.parameters()) + list(m.buffers())}
    assert not caller & {id(t) for t in list(small.parameters()) + list(small.buffers())}
    # the scripted module's weights belong to the pruned model (an optimizer over it sees them)
    assert sum(p.numel() for p in small.parameters()) >= sum(p.numel() for p in m.s.parameters())


def test_torch_compiled_model_is_unwrapped():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    opt = torch.compile(m)
    before_keys = sorted(vars(opt))
    x = torch.randn(1, 3, 8, 8)
    small = fxprune.compile(opt, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    assert sorted(vars(opt)) == before_keys
    assert any("torch.compile" in n for n in fxprune.report(small).notes)
    with torch.no_grad():
        assert small(x).shape == m(x).shape
