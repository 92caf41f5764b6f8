"""The hard pass: build the physically smaller model.

Every parameter and buffer axis that holds channel ids is sliced to the kept positions; modules
are copied with the sliced tensors and their attributes fixed by their rule; the graphs are
copied and the shape constants they carry are rewritten by the rules of their nodes. The
caller's modules and tensors are never written to: every tensor of the result is new.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..graph.factors import FACTORS

from ..graph.channel_graph import ChannelGraph

from ..capture.meta import multi_meta, node_shape, submodule
from ..graph.factors import Factor, factor_on, kept_sizes
from ..graph.rules import REGISTRY, OpRegistry
from ..capture.trace import TracedModel
from ..capture.copying import copy_module, lookup_attr
from ..capture.graph_module import DualGraphModule

__all__ = ["RewriteContext", "pruned_shape", "rewrite_pass", "tensor_cuts"]


class RewriteContext:
    """What a rule's rewriter sees: the analysed node, its copy in the new graph, kept shapes."""

    def __init__(self, old: fx.Node, new: fx.Node, id_kept: np.ndarray, root: dict[str, Any]):
        self.old, self.new, self.id_kept, self._root = old, new, id_kept, root

    def dense_shape(self, node: Any) -> tuple[int, ...] | None:
        return node_shape(node)

    def kept_shape(self, node: fx.Node) -> tuple[int, ...]:
        return pruned_shape(node, self.id_kept)

    def dense_tree(self, node: fx.Node) -> list[tuple[int, ...]]:
        return [tuple(m.shape) for m in multi_meta(node)]

    def kept_tree(self, node: fx.Node) -> list[tuple[int, ...]]:
        trees = node.meta[FACTORS]
        return [kept_sizes(f, tuple(m.shape), self.id_kept) for f, m in zip(trees, multi_meta(node))]

    def factor_on(self, node: fx.Node, axis: int) -> Factor | None:
        f = node.meta.get(FACTORS)
        return factor_on(f, axis) if isinstance(f, tuple) else None

    def module(self) -> nn.Module:
        return self._root[self.old.target]


def pruned_shape(node: fx.Node, id_kept: np.ndarray) -> tuple[int, ...] | None:
    shape = node_shape(node)
    factors = node.meta.get(FACTORS)
    if shape is None:
        return None
    return kept_sizes(factors, shape, id_kept) if isinstance(factors, tuple) else shape


def tensor_cuts(cg: ChannelGraph, id_kept: np.ndarray) -> dict[str, list[tuple[int, np.ndarray]]]:
    """For every tensor (canonical name) that loses channels: (axis, kept indices) per cut axis."""
    cuts: dict[str, list[tuple[int, np.ndarray]]] = {}
    for (name, axis), ids in cg.param_axes.items():
        keep = id_kept[ids]
        if not keep.all():
            cuts.setdefault(name, []).append((axis, np.nonzero(keep)[0]))
    return cuts


def _slice_tensors(cg: ChannelGraph, id_kept: np.ndarray) -> dict[str, torch.Tensor]:
    """New tensor for every tensor the graphs use: sliced where an axis lost channels, cloned
    otherwise (so training the pruned model never writes to the caller's weights)."""
    cuts = tensor_cuts(cg, id_kept)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, t in cg.tensors.items():
            new = t.detach()
            for axis, idx in cuts.get(name, []):
                new = new.index_select(axis, torch.as_tensor(idx, device=t.device))
            if name not in cuts:
                new = new.clone()
            channels_last = t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
            new = new.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            if isinstance(t, nn.Parameter):
                new = nn.Parameter(new, requires_grad=t.requires_grad)
            out[name] = new
        _rescale_weight_norms(cg, cuts, out)
    return out


def _rescale_weight_norms(cg: ChannelGraph, cuts: dict[str, list[tuple[int, np.ndarray]]],
                          out: dict[str, torch.Tensor]) -> None:
    """``w = g * v / ||v||`` (norm over every axis but ``dim``): when ``v`` loses entries along
    another axis its norm shrinks, so ``g`` is scaled by ``||v_kept|| / ||v_full||`` — the pruned
    weight then equals the dense weight restricted to the kept entries, exactly."""
    for v_name, (g_name, dim) in cg.weight_norms.items():
        v_name, g_name = cg.canonical(v_name), cg.canonical(g_name)
        other = [(a, idx) for a, idx in cuts.get(v_name, []) if a != dim]
        if not other:
            continue
        full = cg.tensors[v_name].detach()
        for a, idx in cuts.get(v_name, []):
            if a == dim:
                full = full.index_select(a, torch.as_tensor(idx, device=full.device))
        axes = [a for a in range(full.ndim) if a != dim]
        v_kept = out[v_name].detach()
        norm = torch.linalg.vector_norm
        ratio = norm(v_kept.double(), dim=axes, keepdim=True) / norm(full.double(), dim=axes, keepdim=True)
        g = out[g_name]
        g.data.copy_((g.detach().double() * ratio.reshape(g.shape)).to(g.dtype))


def _refresh_legacy_weight_norm(module: nn.Module) -> None:
    """``torch.nn.utils.weight_norm`` (hook-based) keeps a computed ``weight`` attribute that
    its pre-hook refreshes before every forward; refresh it now so the module's attributes can be
    read from the sliced ``g`` and ``v``."""
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm):
            with torch.no_grad():
                setattr(module, hook.name, hook.compute_weight(module))


def _copy_graph(graph: fx.Graph) -> tuple[fx.Graph, dict[fx.Node, fx.Node]]:
    new = fx.Graph()
    new._codegen = copy.deepcopy(graph._codegen)
    val_map: dict[fx.Node, fx.Node] = {}
    out = new.graph_copy(graph, val_map)
    new.output(out)
    return new, val_map


def rewrite_pass(traced: TracedModel, cg: ChannelGraph, id_kept: np.ndarray,
                 registry: OpRegistry = REGISTRY, module_class: type[DualGraphModule] = DualGraphModule,
                 graph_changes: list[fx.Node] | None = None) -> DualGraphModule:
    """The physically smaller model: sliced tensors, fixed module attributes, rewritten shape
    constants, built as ``module_class`` (the compiler's ``PrunedGraphModule``). ``graph_changes``: a
    list to which the analysed nodes whose rewrite changed the graph itself (arguments, target,
    inserted nodes) are appended; module attribute updates do not count."""
    tensors = _slice_tensors(cg, id_kept)
    memo_base = {id(cg.tensors[name]): t for name, t in tensors.items()}  # tied weights stay tied
    root: dict[str, Any] = {}
    gms = traced.graph_modules
    for gm in gms:
        for node in gm.graph.nodes:
            if node.target in root:
                continue
            if node.op == "call_module":
                old = submodule(gm, node.target)
                memo = {id(t): memo_base[id(t)] for t in list(old.parameters()) + list(old.buffers())
                        if id(t) in memo_base}
                new = copy_module(old, memo)
                _refresh_legacy_weight_norm(new)
                rule = registry.module_rule(old)
                changed = any(memo[id(t)].shape != t.shape for t in list(old.parameters()) + list(old.buffers())
                              if id(t) in memo)
                if changed and rule is not None and rule.update_module is not None:
                    rule.update_module(new, old)
                root[node.target] = new
            elif node.op == "get_attr":
                value = lookup_attr(gm, node.target)
                root[node.target] = memo_base.get(id(value)) if id(value) in memo_base else copy.deepcopy(value)
    graphs = []
    for gm in gms:
        graph, val_map = _copy_graph(gm.graph)
        for old, new in val_map.items():
            if old.op in ("call_module", "call_function", "call_method"):
                rule = registry.lookup(old, lambda target: submodule(gm, target))
                if rule is not None and rule.rewrite is not None:
                    before, size = (new.target, new.args, new.kwargs), len(graph.nodes)
                    rule.rewrite(RewriteContext(old, new, id_kept, root))
                    if graph_changes is not None and (len(graph.nodes) != size
                                                or not _same((new.target, new.args, new.kwargs), before)):
                        graph_changes.append(old)
        graphs.append(graph)
    name = type(traced.eval_gm).__name__
    small = module_class(root, graphs[0], graphs[1] if len(graphs) > 1 else None, class_name=name)
    _restore_containers(small, traced.root)
    return small


def _same(a: Any, b: Any) -> bool:
    """Structural equality of node arguments (nodes and other objects by identity)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):  # a shape as list or tuple: the same
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float, str, bool, type(None), slice, torch.dtype, torch.device)):
        return a == b
    return a is b


def _restore_containers(small: nn.Module, original: nn.Module) -> None:
    """GraphModule rebuilds the module tree from plain ``nn.Module`` s; give back Sequential /
    ModuleList / ModuleDict where every child survived, so ``small.layer1[0]`` still works."""
    for name, orig in original.named_modules():
        if not name or not isinstance(orig, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            continue
        try:
            cur = small.get_submodule(name)
        except AttributeError:
            continue
        if type(cur) is not nn.Module or set(cur._modules) != set(orig._modules) or vars(cur)["_parameters"] \
                or vars(cur)["_buffers"]:
            continue
        cls = next(c for c in (nn.Sequential, nn.ModuleList, nn.ModuleDict) if isinstance(orig, c))
        new = cls()
        for key in orig._modules:
            new.add_module(key, cur._modules[key])
        parent, _, leaf = name.rpartition(".")
        setattr(small.get_submodule(parent) if parent else small, leaf, new)
