"""The channel graph: channel ids of every tensor edge and parameter axis, and their groups.

``analyze`` walks one or more traced graphs (the eval-mode graph and, when it differs, the
train-mode graph) over the same modules, asks the op-rule registry how ids flow through each
node, and unions ids that must be removed together. Ids of parameter axes are keyed by the
parameter's qualified name, so the same conv seen in two graphs ties them together.

A *class* is a union-find set of ids: channels removed together. A *group* is the set of
classes produced by one layer width (classes that share a producer axis: conv/linear output
rows, embedding columns); plans rank and prune within groups.
"""

from __future__ import annotations

import hashlib
import operator
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from ..errors import TraceError
from .copying import lookup_attr
from .factors import NO_FACTORS, Factor, Factors, factor_on
from .unionfind import UnionFind

FACTORS = "fxprune.factors"
ParamAxis = tuple[str, int]


@dataclass
class Barrier:
    """A node whose op has no rule, or whose rule refuses some channels."""

    node: str
    op: str
    reason: str
    ids: np.ndarray = field(repr=False)


@dataclass
class Group:
    """Classes that share a producer axis; the unit plans rank and prune in."""

    index: int
    key: str
    classes: np.ndarray = field(repr=False)  # union-find roots, canonical order
    pinned: np.ndarray = field(repr=False)  # bool per class
    producers: list[str]  # labels "param@axis" (or "node@axis" for computed weights)
    members: list[ParamAxis]  # every parameter axis that holds a class of this group

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def prunable(self) -> int:
        return int((~self.pinned).sum())

    @property
    def signature(self) -> str:
        """Short hash of the group's member axes: a resolution applies only to the same structure."""
        text = ",".join(f"{n}@{a}" for n, a in sorted(self.members)) + "|" + ",".join(self.producers)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def producer_modules(self) -> list[str]:
        seen: dict[str, None] = {}
        for label in self.producers:
            name = label.rsplit("@", 1)[0]
            seen.setdefault(name.rsplit(".", 1)[0] if "." in name else name, None)
        return list(seen)


_MODULE_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def submodule(root: torch.nn.Module, target: str) -> torch.nn.Module:
    """``root.get_submodule(target)`` through a cached name table. Only for module trees that do
    not change afterwards (the traced dense graph modules): lookups happen several times per node."""
    table = _MODULE_TABLES.get(root)
    if table is None:
        table = _MODULE_TABLES[root] = dict(root.named_modules(remove_duplicate=False))
    return table[target]


def tensor_meta(node: Any) -> Any:
    return node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None


def multi_meta(node: Any) -> list[Any] | None:
    """The per-output metadata of a node that returns a tuple/list (None for a single tensor)."""
    meta = tensor_meta(node)
    if isinstance(meta, (tuple, list)) and not isinstance(meta, TensorMetadata):
        return list(meta)
    return None


def node_shape(node: Any) -> tuple[int, ...] | None:
    meta = tensor_meta(node)
    return tuple(int(s) for s in meta.shape) if isinstance(meta, TensorMetadata) else None


def map_meta(meta: Any, fn) -> Any:
    """Apply ``fn`` to every TensorMetadata leaf of a node's (possibly nested) output meta."""
    if isinstance(meta, TensorMetadata):
        return fn(meta)
    if isinstance(meta, (tuple, list)):
        return [map_meta(m, fn) for m in meta]
    if isinstance(meta, dict):
        return {k: map_meta(v, fn) for k, v in meta.items()}
    return None


def iter_factors(tree: Any) -> Iterable[Factor]:
    """Every Factor in a node's factor tree: a tuple of Factors for a tensor, a list of trees
    for a tuple/list output, a dict of trees for a dict output, None for anything else."""
    if isinstance(tree, tuple):
        yield from tree
    elif isinstance(tree, list):
        for t in tree:
            yield from iter_factors(t)
    elif isinstance(tree, dict):
        for t in tree.values():
            yield from iter_factors(t)


class ChannelGraph:
    """Union-find over channel ids plus the parameter axes and barriers found by ``analyze``."""

    def __init__(self, graph_modules: Sequence[fx.GraphModule]):
        self.graph_modules = list(graph_modules)
        self.uf = UnionFind()
        self.param_axes: dict[ParamAxis, np.ndarray] = {}
        # weight-normalised layers: v tensor name -> (g tensor name, dim or None for one norm)
        self.weight_norms: dict[str, tuple[str, int | None]] = {}
        self.producers: dict[str, np.ndarray] = {}
        self.barriers: list[Barrier] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.aliases: dict[str, str] = {}
        self._canonical: dict[int, str] = {}
        self._groups: list[Group] | None = None
        for gm in graph_modules:
            for name, t in list(gm.named_parameters(remove_duplicate=False)) + list(
                gm.named_buffers(remove_duplicate=False)
            ):
                self._register_tensor(name, t)

    # -- parameters ---------------------------------------------------------------------
    def _register_tensor(self, name: str, t: torch.Tensor) -> str:
        canon = self._canonical.setdefault(id(t), name)
        self.tensors.setdefault(canon, t)
        if canon != name:
            self.aliases[name] = canon
        return canon

    def canonical(self, name: str, tensor: torch.Tensor | None = None) -> str:
        if name in self.tensors:
            return name
        if name in self.aliases:
            return self.aliases[name]
        if tensor is None:
            raise KeyError(name)
        return self._register_tensor(name, tensor)

    def param_axis(self, name: str, axis: int, ids: np.ndarray | None = None, *, producer: bool = False,
                   tensor: torch.Tensor | None = None) -> np.ndarray:
        """Ids of ``axis`` of parameter/buffer ``name``; ties them to ``ids`` when given.

        The first call fixes the axis' ids (fresh ones when ``ids`` is None); later calls union
        position by position, which is how shared modules and train/eval graphs connect."""
        name = self.canonical(name, tensor)
        key = (name, axis)
        size = self.tensors[name].shape[axis]
        if ids is not None and ids.shape != (size,):
            raise AssertionError(f"{name} axis {axis} has {size} entries, got ids of shape {ids.shape}")
        have = self.param_axes.get(key)
        if have is None:
            have = self.param_axes[key] = ids if ids is not None else self.uf.fresh(size)
        elif ids is not None and have is not ids and not np.array_equal(have, ids):
            self.uf.union(have, ids)
        if producer:
            self.mark_producer(f"{name}@{axis}", have)
        return have

    def mark_producer(self, label: str, ids: np.ndarray) -> None:
        """Declare that ``ids`` are created by one layer width (conv/linear output rows)."""
        have = self.producers.get(label)
        if have is None:
            self.producers[label] = ids
        elif have is not ids:
            self.uf.union(have, ids)

    # -- pinning ----------------------------------------------------------------------------
    def pin(self, ids: np.ndarray, node: fx.Node | None, op: str, reason: str) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size == 0:
            return
        self.uf.pin(ids)
        self.barriers.append(Barrier(node.name if node is not None else "-", op, reason, ids))

    # -- results ----------------------------------------------------------------------------
    def factors(self, node: fx.Node) -> Any:
        return node.meta.get(FACTORS)

    def enforce_rectangles(self) -> None:
        """A factor over several axes must be pruned as a rectangle (``view(B, g, C/g)`` keeps
        the same positions in every row): union ids along every axis but the last one whose
        classes vary, until nothing changes."""
        multi = [f for gm in self.graph_modules for n in gm.graph.nodes
                 for f in iter_factors(n.meta.get(FACTORS)) if len(f.axes) > 1]
        changed = True
        while changed and multi:
            changed = False
            for f in multi:
                roots = self.uf.find(f.ids)
                vary = [k for k in range(roots.ndim) if roots.shape[k] > 1 and not np.array_equal(
                    np.broadcast_to(roots.take([0], axis=k), roots.shape), roots)]
                for k in vary[:-1]:
                    self.uf.union(roots, np.broadcast_to(roots.take([0], axis=k), roots.shape))
                    changed = True

    def groups(self) -> list[Group]:
        if self._groups is None:
            self._groups = self._build_groups()
        return self._groups

    def _build_groups(self) -> list[Group]:
        roots = self.uf.roots()
        pinned = np.zeros(self.uf.n, dtype=bool)
        pinned[self.uf.pinned_roots()] = True
        labels = list(self.producers)
        if not labels:
            self.group_of = np.full(self.uf.n, -1, dtype=np.int64)
            self.class_index = np.full(self.uf.n, -1, dtype=np.int64)
            self.roots = roots
            return []
        per_label = [roots[self.producers[label]].ravel() for label in labels]
        # second level, vectorised: classes that share a producer axis are one group
        guf = UnionFind()
        guf.fresh(self.uf.n)
        for cls in per_label:
            guf.union(cls[:1], cls)
        flat = np.concatenate(per_label)
        owner = np.repeat(np.arange(len(labels)), [len(c) for c in per_label])
        _, first = np.unique(flat, return_index=True)
        order = flat[np.sort(first)]  # classes in order of first appearance (canonical)
        groot = guf.find(order)
        _, g_first = np.unique(groot, return_index=True)
        group_roots = groot[np.sort(g_first)]  # groups in order of first appearance
        g_index = np.full(self.uf.n, -1, dtype=np.int64)
        g_index[group_roots] = np.arange(len(group_roots))
        order_group = g_index[groot]
        group_of = np.full(self.uf.n, -1, dtype=np.int64)
        group_of[order] = order_group
        class_index = np.full(self.uf.n, -1, dtype=np.int64)
        groups: list[Group] = []
        for gi in range(len(group_roots)):
            cls = order[order_group == gi]
            class_index[cls] = np.arange(len(cls))
            groups.append(Group(gi, "", cls, pinned[cls], [], []))
        for key, ids in self.param_axes.items():
            touched = np.unique(group_of[roots[ids]])
            for g in touched[touched >= 0]:
                groups[g].members.append(key)
        label_group = group_of[flat[np.searchsorted(owner, np.arange(len(labels)))]]
        for label, g in zip(labels, label_group):
            groups[int(g)].producers.append(label)
        for g in groups:
            g.key = g.producers[0]
        self.group_of, self.class_index, self.roots = group_of, class_index, roots
        return groups

    def positions(self, group: Group, key: ParamAxis) -> tuple[np.ndarray, np.ndarray]:
        """Positions along parameter axis ``key`` that belong to ``group`` and the index of the
        class (within the group) at each of them."""
        r = self.roots[self.param_axes[key]]
        pos = np.nonzero(self.group_of[r] == group.index)[0]
        return pos, self.class_index[r[pos]]

    def id_kept(self, pruned_roots: np.ndarray) -> np.ndarray:
        """Boolean per id: False when its class is pruned."""
        dead = np.zeros(self.uf.n, dtype=bool)
        dead[pruned_roots] = True
        return ~dead[self.uf.roots()]


# ------------------------------------------------------------------------------------------------
# Rule context and the analysis driver
# ------------------------------------------------------------------------------------------------
_MISSING = object()


class RuleContext:
    """What a rule sees of one node: its inputs' factors and shapes, and the union-find."""

    def __init__(self, cg: ChannelGraph, gm: fx.GraphModule, node: fx.Node):
        self.cg, self.gm, self.node = cg, gm, node

    # inputs -------------------------------------------------------------------------------
    def arg(self, index: int, name: str | None = None, default: Any = _MISSING) -> Any:
        args, kwargs = self.node.args, self.node.kwargs
        if index is not None and len(args) > index:
            return args[index]
        if name is not None and name in kwargs:
            return kwargs[name]
        if default is _MISSING:
            raise TraceError(f"node `{self.node.name}` ({self.op}): missing argument {name or index}")
        return default

    def factors(self, x: Any) -> Factors:
        if isinstance(x, fx.Node):
            f = x.meta.get(FACTORS)
            if isinstance(f, tuple):
                return f
        return NO_FACTORS

    def shape(self, x: Any = None) -> tuple[int, ...] | None:
        return node_shape(self.node if x is None else x)

    @property
    def out_shape(self) -> tuple[int, ...]:
        s = node_shape(self.node)
        if s is None:
            raise TraceError(f"node `{self.node.name}` ({self.op}) has no tensor output to carry channels")
        return s

    def module(self) -> torch.nn.Module:
        return submodule(self.gm, self.node.target)

    @property
    def op(self) -> str:
        return describe_target(self.gm, self.node)

    # union-find ----------------------------------------------------------------------------
    def fresh(self, count: int, *, pinned: bool = False) -> np.ndarray:
        return self.cg.uf.fresh(count, pinned=pinned)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        self.cg.uf.union(a, b)

    def pin(self, ids: np.ndarray, reason: str) -> None:
        self.cg.pin(ids, self.node, self.op, reason)

    def pin_factors(self, factors: Factors, reason: str) -> None:
        for f in factors:
            self.pin(f.ids, reason)

    def module_param(self, pname: str, axis: int, ids: np.ndarray | None = None, *,
                     producer: bool = False) -> np.ndarray | None:
        """Ids of ``axis`` of the called module's parameter/buffer ``pname`` (None if absent)."""
        mod = self.module()
        norm = weight_norm_of(mod, pname)
        if norm is not None:  # prune the stored tensors (v along the weight's axes, g along dim)
            g_name, v_name, dim = norm
            prefix = f"{self.node.target}."
            v = lookup_tensor(mod, v_name)
            have = self.cg.param_axis(prefix + v_name, axis, ids, producer=producer, tensor=v)
            nd = v.ndim
            self.cg.canonical(prefix + g_name, lookup_tensor(mod, g_name))
            if dim is not None and axis == dim % nd:
                self.cg.param_axis(prefix + g_name, axis, have, tensor=lookup_tensor(mod, g_name))
            self.cg.weight_norms[prefix + v_name] = (prefix + g_name, None if dim is None else dim % nd)
            return have
        t = getattr(mod, pname, None)
        if not isinstance(t, torch.Tensor):
            return None
        have = self.cg.param_axis(f"{self.node.target}.{pname}", axis, ids, producer=producer, tensor=t)
        if is_parametrized(mod, pname):
            kinds = ", ".join(type(p).__name__ for p in mod.parametrizations[pname])
            self.pin(have, f"`{pname}` is parametrized ({kinds}); fxprune prunes through weight_norm only — remove "
                           f"it first with torch.nn.utils.parametrize.remove_parametrizations(module, '{pname}') "
                           "to prune this layer")
        return have

    def barrier(self, reason: str) -> Any:
        """Pin every channel of every tensor input; the output carries no channels."""
        for a in self.node.all_input_nodes:
            for f in iter_factors(a.meta.get(FACTORS)):
                self.pin(f.ids, reason)
        return map_meta(tensor_meta(self.node), lambda m: NO_FACTORS)


def describe_target(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        try:
            return f"{type(submodule(gm, node.target)).__name__} `{node.target}`"
        except (AttributeError, KeyError):
            return f"module `{node.target}`"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        t = node.target
        mod = getattr(t, "__module__", None) or ""
        name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)
        mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch"}.get(mod, mod)
        return f"{mod}.{name}" if mod else name
    return f"{node.op} {node.target}"


def is_parametrized(mod: nn.Module, pname: str) -> bool:
    from torch.nn.utils import parametrize

    return parametrize.is_parametrized(mod, pname)


def lookup_tensor(mod: nn.Module, path: str) -> torch.Tensor:
    obj: Any = mod
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def weight_norm_of(mod: nn.Module, pname: str) -> tuple[str, str, int | None] | None:
    """``(g, v, dim)`` names (relative to ``mod``) when ``mod.<pname>`` is weight-normalised —
    by ``torch.nn.utils.parametrizations.weight_norm`` (one ``_WeightNorm`` parametrization) or
    the legacy hook-based ``torch.nn.utils.weight_norm``; ``dim`` None: one norm over the
    whole tensor. None otherwise."""
    from torch.nn.utils.parametrizations import _WeightNorm

    if is_parametrized(mod, pname):
        plist = mod.parametrizations[pname]
        if len(plist) == 1 and isinstance(plist[0], _WeightNorm):
            dim = plist[0].dim
            return (f"parametrizations.{pname}.original0", f"parametrizations.{pname}.original1",
                    None if dim == -1 else dim)
        return None
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in mod._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == pname:
            return f"{pname}_g", f"{pname}_v", None if hook.dim == -1 else hook.dim
    return None


# Ops whose non-tensor result only describes a tensor (its size, dtype, device, ...).
_METADATA_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "is_contiguous", "get_device", "type",
                     "element_size", "is_floating_point", "is_complex", "stride"}
_METADATA_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "layout", "T"}


def analyze(graph_modules: Sequence[fx.GraphModule], registry=None) -> ChannelGraph:
    """Run the op rules over every node of ``graph_modules`` (already shape-propagated)."""
    from .rules import REGISTRY  # rules import this module

    registry = registry or REGISTRY
    cg = ChannelGraph(graph_modules)
    for gm in graph_modules:
        for node in gm.graph.nodes:
            node.meta[FACTORS] = _propagate(cg, gm, node, registry)
    _check_size_reads(cg)
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
        for f in iter_factors_of_args(node.args):
            cg.pin(f.ids, node, "output", "model output")
        return None
    rule = registry.lookup(gm, node)
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


def has_tensor(meta: Any) -> bool:
    if isinstance(meta, TensorMetadata):
        return True
    if isinstance(meta, (tuple, list)):
        return any(has_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(has_tensor(m) for m in meta.values())
    return False


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


# ------------------------------------------------------------------------------------------------
# Sizes read from channel axes
# ------------------------------------------------------------------------------------------------
_SHAPE_METHODS = {"view", "reshape", "expand", "split", "split_with_sizes"}
_SHAPE_FUNCTIONS = {torch.reshape, torch.split}
_SCALAR_FUNCTIONS = {operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv,
                     operator.truediv, operator.mod, operator.neg, operator.pow}


def _sizes_channel_axes_only(user: fx.Node, scalar: fx.Node) -> bool:
    """Does ``scalar`` size only channel axes of ``user``'s result? Those slots are rewritten to
    literal pruned widths, so the value read does not matter; any other slot would get a width
    read off a pruned tensor."""
    name = user.target if user.op == "call_method" else getattr(user.target, "__name__", "")
    if name in ("view", "reshape", "expand"):
        rest = user.args[1:]
        sizes = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else list(rest)
        factors = user.meta.get(FACTORS)
        axes = {a for f in factors for a in f.axes} if isinstance(factors, tuple) else set()
        return all(k in axes for k, s in enumerate(sizes) if s is scalar)
    if name in ("split", "split_with_sizes"):  # sizes are rewritten when the split axis is a channel axis
        src = user.args[0]
        dim = user.args[2] if len(user.args) > 2 else user.kwargs.get("dim", 0)
        factors = src.meta.get(FACTORS) if isinstance(src, fx.Node) else None
        shape = node_shape(src)
        return isinstance(factors, tuple) and shape is not None and factor_on(factors, dim % len(shape)) is not None
    return False


def _check_size_reads(cg: ChannelGraph) -> None:
    """A channel count read with ``x.size(1)`` / ``x.shape`` is fine when it only sizes channel
    axes of view/reshape/expand/split (the rewrite puts literal pruned widths there). If it feeds
    arithmetic on tensors (``q * C ** -0.5``), an assert, or another axis, pruning would change
    the result: pin the axis it was read from."""
    for gm in cg.graph_modules:
        for node in gm.graph.nodes:
            src, axes = _size_read(node)
            if src is None:
                continue
            factors = src.meta.get(FACTORS)
            if not isinstance(factors, tuple):
                continue
            for axis, bad in _size_uses(node, axes):
                f = factor_on(factors, axis)
                if f is not None and bad is not None:
                    cg.pin(f.ids, bad, describe_target(gm, bad),
                           f"uses the size of channel axis {axis} of `{src.name}` as a value")


def _size_read(node: fx.Node) -> tuple[fx.Node | None, Any]:
    if node.op == "call_method" and node.target == "size":
        src = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        shape = node_shape(src)
        if shape is None:
            return None, None
        return src, (list(range(len(shape))) if dim is None else [dim % len(shape)])
    if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
        shape = node_shape(node.args[0])
        return (node.args[0], list(range(len(shape)))) if shape is not None else (None, None)
    if node.op == "call_method" and node.target == "numel":
        shape = node_shape(node.args[0])
        return (node.args[0], list(range(len(shape)))) if shape is not None else (None, None)
    return None, None


def _size_uses(node: fx.Node, axes: list[int]) -> list[tuple[int, fx.Node | None]]:
    """(axis, offending user or None) for every way the size value is used."""
    out: list[tuple[int, fx.Node | None]] = []
    stack = [(node, axes)]
    while stack:
        n, ax = stack.pop()
        for user in n.users:
            if user.op == "call_function" and user.target is operator.getitem and user.args[0] is n \
                    and isinstance(user.args[1], (int, slice)) and len(ax) > 1:
                picked = ax[user.args[1]]  # x.shape[1] or x.shape[-2:]
                stack.append((user, picked if isinstance(picked, list) else [picked]))
            elif user.op == "call_function" and user.target in _SCALAR_FUNCTIONS and node_shape(user) is None:
                stack.append((user, ax))
            elif (user.op == "call_method" and user.target in _SHAPE_METHODS and user.args[0] is not n) or \
                    (user.op == "call_function" and user.target in _SHAPE_FUNCTIONS and user.args[0] is not n):
                out.extend((a, None if _sizes_channel_axes_only(user, n) else user) for a in ax)
            else:
                out.extend((a, user) for a in ax)
    return out
