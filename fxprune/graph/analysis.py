"""The analysis driver: run the op rules over traced graphs and build their ``ChannelGraph``.

``build_channel_graph`` walks one or more traced graphs (the eval-mode graph and, when it differs, the
train-mode graph) over the same modules, asks the op-rule registry how ids flow through each
node, and unions ids that must be removed together. Ids of parameter axes are keyed by the
parameter's qualified name, so the same conv seen in two graphs ties them together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx
from torch.fx.passes.shape_prop import TensorMetadata

from ..capture.copying import lookup_attr
from ..capture.meta import has_tensor, map_meta, submodule, tensor_meta
from .channel_graph import ChannelGraph
from .factors import FACTORS, NO_FACTORS, Factor, iter_factors
from .rules import REGISTRY, OpRegistry, RuleContext
from .size_reads import check_size_reads

__all__ = ["build_channel_graph"]

# Ops whose non-tensor result only describes a tensor (its size, dtype, device, ...).
_METADATA_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "is_contiguous", "get_device", "type",
                     "element_size", "is_floating_point", "is_complex", "stride"}
_METADATA_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "layout", "T"}


def build_channel_graph(graph_modules: Sequence[fx.GraphModule], registry: OpRegistry = REGISTRY,
                        attention: str = "heads", prune_outputs: bool = False) -> ChannelGraph:
    """Run the op rules over every node of ``graph_modules`` (already shape-propagated).
    ``attention``: prune attention by whole ``"heads"`` or by ``"head_dims"`` (see ``contract``);
    ``prune_outputs``: the output's channels are not pinned."""
    cg = ChannelGraph(graph_modules, attention, prune_outputs)
    for gm in graph_modules:
        for node in gm.graph.nodes:
            node.meta[FACTORS] = _propagate(cg, gm, node, registry)
    check_size_reads(cg)
    cg.enforce_rectangles()
    return cg


def _propagate(cg: ChannelGraph, gm: fx.GraphModule, node: fx.Node, registry) -> Any:
    meta = tensor_meta(node)
    ctx = RuleContext(cg, gm, node)
    if node.op == "placeholder":
        return map_meta(meta, lambda m: NO_FACTORS)
    if node.op == "get_attr":
        value = lookup_attr(gm, node.target)
        if not isinstance(value, torch.Tensor):
            return None
        return tuple(Factor((a,), cg.param_axis(node.target, a, tensor=value))
                     for a, s in enumerate(value.shape) if s > 1)
    if node.op == "output":
        if not cg.prune_outputs:
            for f in iter_factors_of_args(node.args):
                cg.pin(f.ids, node, "output", "model output")
        return None
    rule = registry.lookup(node, lambda target: submodule(gm, target))
    if rule is not None:
        out = rule.propagate(ctx)
        _check_factors(ctx, out, meta)
        return out
    if not has_tensor(meta):
        # a non-tensor result (a size, an assert, a dtype): harmless unless it reads channel data
        has_channels = any(True for a in node.all_input_nodes for _ in iter_factors(a.meta.get(FACTORS)))
        if not has_channels or _is_metadata(node):
            return None
    return ctx.barrier("no rule for this op")


def iter_factors_of_args(args: Any) -> Iterable[Factor]:
    for n in _flatten_nodes(args):
        yield from iter_factors(n.meta.get(FACTORS))


def _flatten_nodes(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, out.append)
    return out


def _is_metadata(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _METADATA_METHODS
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in _METADATA_ATTRS
    return False


def _check_factors(ctx: RuleContext, out: Any, meta: Any) -> None:
    if isinstance(meta, TensorMetadata):
        shape = tuple(meta.shape)
        seen: set[int] = set()
        for f in out:
            sizes = tuple(shape[a] for a in f.axes)
            if f.ids.shape != sizes or seen & set(f.axes):
                raise AssertionError(f"rule for {ctx.op} at node `{ctx.node.name}` produced {f} for shape {shape}")
            seen |= set(f.axes)
