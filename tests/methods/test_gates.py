"""The soft (gate) pass: gated model == hard-pruned model for 0/1 gates; gates follow groups."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fxprune.models.cifar import densenet40
from fxprune.methods.gates import Gate, GatedModel
from tests.conftest import assert_unchanged, randomize, snapshot

CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(), (2, 3, 64, 64)),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(), (2, 3, 64, 64)),
    "densenet40": (densenet40, (2, 3, 32, 32)),
    "googlenet": (lambda: torchvision.models.googlenet(aux_logits=True, init_weights=True), (2, 3, 96, 96)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_binary_gates_equal_the_finalized_model(name):
    make, shape = CASES[name]
    torch.manual_seed(0)
    model = randomize(make()).eval()
    x = torch.randn(*shape)
    gated = GatedModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(gated(x), model(x), rtol=1e-4, atol=1e-5)
        mask = (torch.rand(gated.n_slots) > 0.4).float()
        mask[gated.pinned] = 1
        gated.mask.copy_(mask)
        want = gated(x)
    small = gated.finalize()
    with torch.no_grad():
        torch.testing.assert_close(small(x), want, rtol=1e-4, atol=1e-5)
    kept = sum(len(c.keep) for c in gated.resolution_from_gates().groups.values())
    assert kept == int(mask.sum())


def test_residual_channels_share_one_gate():
    model = randomize(torchvision.models.resnet18()).eval()
    gated = GatedModel(model, torch.randn(1, 3, 64, 64))
    nodes = {n.name: n for n in gated.eval_gm.graph.nodes}
    gate_of = lambda name: next(u for u in nodes[name].users if u.op == "call_module" and "fxprune_gates" in u.target)  # noqa: E731
    a = gated.eval_gm.get_submodule(gate_of("layer1_0_bn2").target)
    b = gated.eval_gm.get_submodule(gate_of("layer1_1_bn2").target)
    assert isinstance(a, Gate) and torch.equal(a.index, b.index)


def test_training_the_gated_model_leaves_the_callers_model_alone_and_reaches_the_gates():
    model = randomize(torchvision.models.resnet18()).eval()
    before = snapshot(model)
    x = torch.randn(2, 3, 64, 64)
    gated = GatedModel(model, x)
    alpha = torch.zeros(gated.n_slots, requires_grad=True)
    gated.gate_vector = lambda: torch.sigmoid(alpha)
    gated.train()
    opt = torch.optim.SGD(list(gated.model.parameters()) + [alpha], lr=0.1)
    gated(x).square().mean().backward()
    opt.step()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert_unchanged(model, before)


class _SplitNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.f = torch.nn.Conv2d(3, 5, 1)
        self.head = torch.nn.Linear(6, 5)

    def forward(self, x):
        a, b = torch.split(self.stem(x), [1, 3], dim=1)
        y = torch.cat([torch.relu(a), self.f(b)], dim=1)
        return self.head(y.mean((2, 3)))


def test_a_resolution_that_empties_a_tensor_is_named_and_gates_keep_one_channel():
    """Regression (found by the gated property test): a 0/1 mask that removes the whole first
    output of a split gave a broken model; compile now names the tensor, GatedModel keeps one."""
    import fxprune
    from fxprune.errors import ResolutionError

    model = _SplitNet().eval()
    x = torch.randn(2, 3, 8, 8)
    gated = GatedModel(model, x)
    stem = next(i for i, g in enumerate(gated.groups) if g.key.startswith("stem"))
    with torch.no_grad():
        gated.mask[gated.group_slice(stem).start] = 0  # channel 0 of the stem = all of the split's `a`
    res = gated.resolution_from_gates()
    assert 0 in res.groups[gated.groups[stem].key].keep  # given back
    bad = fxprune.Resolution({k: fxprune.plan.GroupChoice(c.size, [i for i in c.keep if i != 0] if k.startswith("stem")
                                                          else c.keep, c.modules, c.signature)
                              for k, c in res.groups.items()})
    with pytest.raises(ResolutionError, match="every channel of `split"):
        fxprune.compile(model, resolution=bad, example_inputs=(x,))
    small = gated.finalize().eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), gated.eval()(x), rtol=1e-4, atol=1e-5)
