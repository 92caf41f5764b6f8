"""Registry-wide: every op rule has a cost formula and an example; on its examples the formula
equals FlopCounterMode, and the cost terms at random 0/1 keep vectors equal the MACs of the
compiled model (FlopCounterMode on the pruned model and the report's count).

A new rule is covered by giving it an ``example``: the test fails for a rule without one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fxprune
from fxprune.compiler import analyse
from fxprune.graph.cost import count_macs, node_cost_terms
from fxprune.graph.costmodel import macs_model
from fxprune.graph.rules import REGISTRY, Example
from fxprune.capture.meta import submodule

RULES = {r.name: r for r in REGISTRY.rules()}


def _layer(size: int, ndim: int, axis: int, out: int | None = None) -> nn.Module:
    out = out or size
    if axis == ndim - 1:
        return nn.Linear(size, out)
    assert axis == 1 and 3 <= ndim <= 5, (ndim, axis)
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 3](size, out, 1)


class Harness(nn.Module):
    """Prunable layers in front of the op's channel inputs and behind its output."""

    def __init__(self, ex: Example, out: torch.Tensor | None):
        super().__init__()
        self.ex = ex
        self.op = ex.fn if isinstance(ex.fn, nn.Module) else None
        self.fn = None if isinstance(ex.fn, nn.Module) else ex.fn
        self.inputs = nn.ModuleDict({str(i): _layer(ex.args[i].shape[ex.channel_axis], ex.args[i].ndim,
                                                     ex.channel_axis % ex.args[i].ndim) for i in ex.channels})
        self.outputs = nn.ModuleList(_layer(t.shape[ex.out_axis % t.ndim], t.ndim, ex.out_axis % t.ndim, 3)
                                     for t in (self._tensors(out) if out is not None else []))

    def _tensors(self, out):
        out = out[self.ex.pick] if self.ex.pick is not None else out
        return list(out) if isinstance(out, tuple) else [out]

    def run(self, *xs):
        xs = [self.inputs[str(i)](x) if str(i) in self.inputs else x for i, x in enumerate(xs)]
        out = (self.op or self.fn)(*xs)
        out = out[self.ex.pick] if self.ex.pick is not None else out
        if isinstance(out, tuple):
            items = [m(t) for m, t in zip(self.outputs, out)]
            return type(out)(*items) if hasattr(out, "_fields") else tuple(items)
        return self.outputs[0](out)


class Harness1(Harness):
    def forward(self, a):
        return self.run(a)


class Harness2(Harness):
    def forward(self, a, b):
        return self.run(a, b)


class Harness3(Harness):
    def forward(self, a, b, c):
        return self.run(a, b, c)


HARNESS = {1: Harness1, 2: Harness2, 3: Harness3}


def _examples():
    cases = []
    for name, rule in RULES.items():
        if rule.example is None:
            cases.append(pytest.param(name, None, marks=pytest.mark.xfail(strict=True, reason="rule without example")))
            continue
        exs = rule.example(torch.Generator().manual_seed(0))
        exs = exs if isinstance(exs, (list, tuple)) else [exs]
        cases += [pytest.param(name, k, id=f"{name}-{k}") for k in range(len(exs))]
    return cases


def _build(name: str, k: int) -> tuple[nn.Module, tuple]:
    ex = RULES[name].example(torch.Generator().manual_seed(k))
    ex = (ex if isinstance(ex, (list, tuple)) else [ex])[k]
    torch.manual_seed(k)
    if isinstance(ex.fn, nn.Module):
        ex.fn.eval()
    inputs = ex.args
    probe = Harness(ex, None)  # input layers only, to see the op's output
    with torch.no_grad():
        xs = [probe.inputs[str(i)](x) if str(i) in probe.inputs else x for i, x in enumerate(inputs)]
        out = ex.fn(*xs)
    return HARNESS[len(inputs)](ex, out).eval(), inputs


def _flops(model: nn.Module, inputs: tuple, reference=None) -> int:
    """MACs FlopCounterMode counts in one forward; ``reference`` replaces every call of the op
    (``model.fn`` of a harness, or ``target`` nodes of a compiled graph) by the example's
    counted decomposition."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if reference is None:
            model(*inputs)
        else:
            fn, target = reference
            if isinstance(model, Harness):
                saved, model.fn = model.fn, fn
                try:
                    model(*inputs)
                finally:
                    model.fn = saved
            else:
                gm = torch.fx.GraphModule(model, copy.deepcopy(model.graph))
                for n in gm.graph.nodes:
                    if n.op == "call_function" and n.target is target:
                        n.target = fn
                gm.recompile()
                gm(*inputs)
    return counter.get_total_flops() // 2


def test_every_rule_has_a_cost_formula_and_an_example():
    assert [n for n, r in RULES.items() if r.cost is None or r.example is None] == []


@pytest.mark.parametrize("name,k", _examples())
def test_rule_cost_matches_flop_counter_and_compiled_model(name, k):
    model, inputs = _build(name, k)
    a = analyse(model, inputs)
    gm = a.traced.eval_gm
    uses = [n for n in gm.graph.nodes if REGISTRY.lookup(n, lambda t: submodule(gm, t)) is RULES[name]]
    assert uses, f"the example of `{name}` does not use its op"
    for n in uses:  # the rule's own formula is the count, not the measured fallback
        assert node_cost_terms(n, lambda x: tuple(x.meta["tensor_meta"].shape) if "tensor_meta" in x.meta and
                               hasattr(x.meta["tensor_meta"], "shape") else None,
                               lambda t: submodule(gm, t)) is not None
    ref = (model.ex.reference, model.ex.fn) if model.ex.reference is not None else None
    dense = _flops(model, inputs, ref)
    assert count_macs(gm) == dense
    macs = macs_model(a.cg, gm)
    assert macs.dense == pytest.approx(dense, rel=1e-12)
    pruned_any = False
    for seed in range(3):
        small = fxprune.compile(model, fxprune.Plan(sparsity=0.5, criterion="random", seed=seed, scope="global"),
                                inputs, analysis=a)
        res = small.meta["fxprune.resolution"]
        keep = a.cg.id_kept(res.pruned_roots(a.cg)).astype(float)
        pruned_any |= res.pruned_count > 0
        measured = _flops(small, inputs, ref)
        assert macs.evaluate(keep) == pytest.approx(measured, rel=1e-12)
        assert small.meta["fxprune.report"].macs_after == measured
    if any(g.prunable for g in a.cg.groups()):
        assert pruned_any


def test_the_documented_way_to_add_an_op(monkeypatch):
    """docs/architecture.md's example (``torch.inner``): one rule with its cost formula and example,
    and the same checks as for the built-in rules pass through the public ``register_rule``."""
    import math

    from fxprune.graph.rules import OpRegistry, register_rule
    from fxprune.graph.rules.contract import contract
    from fxprune.graph.rules.registry import rand

    saved = dict(REGISTRY.functions)
    monkeypatch.setattr(REGISTRY, "functions", saved)  # restored after the test

    @register_rule(functions=[torch.inner], example=lambda g: Example(torch.inner, (rand(g, 4, 6), rand(g, 5, 6))))
    def inner(ctx):
        a, b = ctx.arg(0, "input"), ctx.arg(1, "other")
        return contract(ctx, [(a, ["i", "k"]), (b, ["j", "k"])], ["i", "j"], "inner")

    @inner.cost_formula
    def _inner_macs(c):
        a = c.arg(0, "input")
        return [(math.prod(c.out_shape) * c.shape(a)[-1], c.ids() + c.axis_ids(a, -1))]

    assert isinstance(REGISTRY, OpRegistry) and REGISTRY.functions[torch.inner] is inner
    monkeypatch.setitem(RULES, "inner", inner)
    test_rule_cost_matches_flop_counter_and_compiled_model("inner", 0)
