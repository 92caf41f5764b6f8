"""Exact multiply-accumulate counts read off a traced graph, from the op rules' cost formulas.

Counts what ``torch.utils.flop_counter.FlopCounterMode`` counts (convolutions, matmuls,
attention; FLOPs = 2 x MACs) from node shapes alone, so the pruned model's cost is known without
running it: pass the pruned shapes and the pruned modules. An op without a rule, or with a rule
but no cost formula, is run once on meta tensors of the right shapes under FlopCounterMode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata
from torch.utils.flop_counter import FlopCounterMode

from ..capture.copying import deepcopy_module
from ..capture.meta import TENSOR_META, node_shape, submodule
from .channel_graph import ChannelGraph
from .rules import REGISTRY, CostContext, OpRegistry
from .rules.registry import CostTerm

__all__ = ["count_macs", "count_params", "measured_macs", "node_cost_terms", "node_macs"]

Shape = tuple[int, ...]
_CALLS = ("call_function", "call_method", "call_module")


def node_cost_terms(node: fx.Node, shape_of: Callable[[Any], Shape | None], module_of: Callable[[str], nn.Module],
                    cg: ChannelGraph | None = None, registry: OpRegistry = REGISTRY) -> list[CostTerm] | None:
    """The cost terms of ``node`` from its rule's formula; None when the op has no formula (or its
    formula returns None for this call): then its cost is measured."""
    if node.op not in _CALLS:
        return []
    rule = registry.lookup(node, module_of)
    if rule is None or rule.cost is None:
        return None
    terms = rule.cost(CostContext(node, shape_of, module_of, cg))
    return None if terms is None else list(terms)


def node_macs(node: fx.Node, shape_of: Callable[[Any], Shape | None] = node_shape,
              module_of: Callable[[str], nn.Module] | None = None, registry: OpRegistry = REGISTRY) -> int:
    """MACs of one node at the shapes ``shape_of`` gives (a formula, or a measured count)."""
    terms = node_cost_terms(node, shape_of, module_of, None, registry)
    if terms is None:
        return measured_macs(node, shape_of, module_of)
    return int(sum(base for base, _ in terms))


def count_macs(gm: fx.GraphModule, shape_of: Callable[[Any], Shape | None] = node_shape,
               module_of: Callable[[str], nn.Module] | None = None, registry: OpRegistry = REGISTRY) -> int:
    """MACs of one forward over the graph of ``gm``. ``shape_of`` gives a node's output shape
    (default: the shape-propagated one); ``module_of`` resolves call_module targets."""
    module_of = module_of or (lambda target: submodule(gm, target))
    return sum(node_macs(node, shape_of, module_of, registry) for node in gm.graph.nodes)


def measured_macs(node: fx.Node, shape_of: Callable[[Any], Shape | None],
                  module_of: Callable[[str], nn.Module]) -> int:
    """MACs FlopCounterMode counts when ``node``'s op runs once on meta tensors of the given shapes
    (0 for an op that cannot run on meta tensors: its cost is unknown)."""
    if node.op not in _CALLS:
        return 0

    class _Unknown(Exception):
        pass

    def meta(a: fx.Node) -> Any:
        tm = a.meta.get(TENSOR_META)
        if not isinstance(tm, TensorMetadata):
            raise _Unknown
        return torch.empty(shape_of(a), dtype=tm.dtype, device="meta")

    try:
        args, kwargs = fx.node.map_arg(node.args, meta), fx.node.map_arg(node.kwargs, meta)
        if node.op == "call_module":
            fn = deepcopy_module(module_of(node.target)).to("meta")
        elif node.op == "call_method":
            fn = lambda self, *a, **k: getattr(self, node.target)(*a, **k)  # noqa: E731
        else:
            fn = node.target
        with FlopCounterMode(display=False) as counter:
            fn(*args, **kwargs)
        return counter.get_total_flops() // 2
    except Exception:  # noqa: BLE001 - an op that cannot run on meta tensors: not counted
        return 0


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def total(terms: Iterable[CostTerm]) -> int:
    return int(sum(base for base, _ in terms))
