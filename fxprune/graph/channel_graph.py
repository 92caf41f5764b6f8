"""The channel graph: channel ids of every tensor edge and parameter axis, and their groups.

A *class* is a union-find set of ids: channels removed together. A *group* is the set of
classes produced by one layer width (classes that share a producer axis: conv/linear output
rows, embedding columns); plans rank and prune within groups. ``graph.analysis.build_channel_graph`` fills
a ``ChannelGraph`` by running the op rules over traced graphs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx

from .factors import FACTORS, iter_factors
from .unionfind import UnionFind

__all__ = ["Barrier", "ChannelGraph", "Group", "ParamAxis"]

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


class ChannelGraph:
    """Union-find over channel ids plus the parameter axes and barriers found by ``build_channel_graph``."""

    def __init__(self, graph_modules: Sequence[fx.GraphModule], attention: str = "heads",
                 prune_outputs: bool = False):
        self.graph_modules = list(graph_modules)
        # how attention is pruned: "heads" (whole heads) or "head_dims" (the same dims in every head)
        self.attention = attention
        # whether the model's outputs may lose channels (a backbone whose consumer is rebuilt)
        self.prune_outputs = prune_outputs
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
        self._groups = None  # pinning after the groups were built (surgery): build them again
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
        """The groups (built once, after analysis; also fills ``group_of``, ``class_index``, ``roots``)."""
        if self._groups is None:
            self._groups = self._build_groups()
        return self._groups

    @property
    def group_of(self) -> np.ndarray:
        """Group index of every class root (-1: not in a group)."""
        self.groups()
        return self._group_of

    @property
    def class_index(self) -> np.ndarray:
        """Position of every class root within its group (-1: not in a group)."""
        self.groups()
        return self._class_index

    @property
    def roots(self) -> np.ndarray:
        """Union-find root of every id, as of the finished analysis."""
        self.groups()
        return self._roots

    def _build_groups(self) -> list[Group]:
        roots = self.uf.roots()
        pinned = np.zeros(self.uf.n, dtype=bool)
        pinned[self.uf.pinned_roots()] = True
        labels = list(self.producers)
        if not labels:
            self._group_of = np.full(self.uf.n, -1, dtype=np.int64)
            self._class_index = np.full(self.uf.n, -1, dtype=np.int64)
            self._roots = roots
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
        self._group_of, self._class_index, self._roots = group_of, class_index, roots
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
