"""The soft (gate) pass: gated model == hard-pruned model for 0/1 gates; gates follow groups."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fxprune.models.cifar import densenet40
from fxprune.passes.gates import Gate, GatedModel
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
    kept = sum(len(c.keep) for c in gated.resolution().groups.values())
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
