"""Registry-wide: every op rule is found again on the torch.export capture path.

Each rule's example (between prunable layers, the harness of test_registry_costs) is captured
twice, by fx tracing and by torch.export. The ATen graph export produces is translated back to
torch level, so the node the example is about must be found by the *same* rule, the dense MACs
must be equal, and the same plan must prune both captures to the same model size, verified.
A rule whose op the translation does not map fails here, naming the ATen op that was left.
A rule for a Python-level function export decomposes (``F.normalize``) is in ``DECOMPOSED``."""

from __future__ import annotations

import pytest
import torch

import fxprune
from fxprune.capture.meta import submodule
from fxprune.compiler import analyse
from fxprune.graph.cost import count_macs
from fxprune.graph.rules import REGISTRY

from .test_registry_costs import RULES, _build, _examples


def _uses(a, rule):
    gm = a.traced.eval_gm
    return [n for n in gm.graph.nodes if REGISTRY.lookup(n, lambda t: submodule(gm, t)) is rule]


# Python-level functions torch.export records as the ops they are made of: the rule cannot be
# found again, but the ops' rules must give the same channel groups and MACs
DECOMPOSED = {"normalize": "F.normalize -> vector_norm, clamp_min, expand_as, div"}


def _aten_ops(a):
    return sorted({str(n.target) for n in a.traced.eval_gm.graph.nodes
                   if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)})


@pytest.mark.parametrize("name,k", [p for p in _examples() if not p.marks])
def test_rule_is_found_again_on_the_export_path(name, k):
    model, inputs = _build(name, k)
    fx_a = analyse(model, inputs, capture="fx")
    ex_a = analyse(model, inputs, capture="export")
    assert ex_a.capture == "export"
    rule = RULES[name]
    assert name in DECOMPOSED or len(_uses(ex_a, rule)) == len(_uses(fx_a, rule)) > 0, \
        f"`{name}`: the export graph has {len(_uses(ex_a, rule))} nodes of this rule, fx {len(_uses(fx_a, rule))}; " \
        f"ATen ops left unmapped: {_aten_ops(ex_a)}"
    assert count_macs(ex_a.traced.eval_gm) == count_macs(fx_a.traced.eval_gm)
    sizes = sorted((g.size, g.prunable) for g in fx_a.cg.groups())
    assert sorted((g.size, g.prunable) for g in ex_a.cg.groups()) == sizes
    plan = fxprune.Plan(sparsity=0.5, criterion="l1")
    small_fx = fxprune.compile(model, plan, inputs, analysis=fx_a)
    small_ex = fxprune.compile(model, plan, inputs, analysis=ex_a)
    r_fx, r_ex = fxprune.report(small_fx), fxprune.report(small_ex)
    assert (r_ex.macs_after, r_ex.params_after) == (r_fx.macs_after, r_fx.params_after)
    assert r_ex.capture == "export" and r_ex.max_abs_error <= 1e-4 * max(1.0, r_ex.max_abs_reference or 0.0)
