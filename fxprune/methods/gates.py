"""The soft pass: one gate per channel class, multiplied onto every tensor of its group.

``GatedModel`` wraps a private copy of a model: its traced graphs (eval and, when the forward
branches on ``self.training``, train) get ``x * gate`` after every tensor that carries prunable
channels, where the gate entries come from one flat vector with a slot per class of every
prunable group. Residual- and concat-coupled channels share a class, so they share a gate by
construction — training sees exactly the model the hard rewrite will produce when the gates are
0/1. ``gate_vector()`` supplies the values (a 0/1 or decayed mask for soft/hard filter pruning,
``sigmoid(alpha / T)`` for differentiable search); ``finalize()`` keeps the classes whose gate is
non-zero and runs the physical rewrite on the trained weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..graph.factors import FACTORS

from ..graph.channel_graph import Group

from ..capture.meta import node_shape
from ..capture.copying import deepcopy_module, lookup_attr
from .. import compiler
from ..graph.costmodel import macs_model
from ..plan import Resolution
from ..planner import resolution_from_keep, resolve

__all__ = ["ChannelEntries", "Gate", "GatedModel"]


class _Source:
    """Holds the gate vector of the current forward (a plain object: not part of the module tree)."""

    vector: torch.Tensor | None = None


class _Plain:
    """The ungated analysis (eval graph, names) kept outside the module tree."""

    def __init__(self, gm: fx.GraphModule, module_names: set[str], parameters: set[str]) -> None:
        self.gm, self.module_names, self.parameters = gm, module_names, parameters
        self.macs = None


class ChannelEntries:
    """Where the channels of the gate slots live in the parameters: for every parameter axis
    holding prunable channels, the positions along the axis and the slot of each position, and
    whether the axis is a *filter* axis (the output rows / bias of a producing layer) rather
    than a norm entry or a consumer's input column."""

    def __init__(self, params: list[torch.nn.Parameter], names: list[str], axes: list[int],
                 positions: list[torch.Tensor], slots: list[torch.Tensor], filters: list[bool]) -> None:
        self.params, self.names, self.axes = params, names, axes
        self.positions, self.slots, self.filters = positions, slots, filters

    def select(self, slot_mask: torch.Tensor, *, filters_only: bool = False):
        """(param, axis, positions) for the positions whose slot is set in ``slot_mask``."""
        for p, axis, pos, slot, is_filter in zip(self.params, self.axes, self.positions, self.slots, self.filters):
            if filters_only and not is_filter:
                continue
            hit = slot_mask[slot]
            if hit.any():
                yield p, axis, pos[hit]


class Gate(nn.Module):
    """``x * vector[index]`` broadcast over the tensor's non-channel axes."""

    def __init__(self, source: _Source, index: torch.Tensor, shape: Sequence[int]) -> None:
        super().__init__()
        self.source = source
        self.register_buffer("index", index, persistent=False)
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.source.vector[self.index].reshape(self.shape).to(x.dtype)


class GatedModel(nn.Module):
    """A trainable copy of ``model`` with a gate slot per channel class of every prunable group.

    ``groups``: the prunable groups; ``offsets[i]``: the first slot of group i; slots of pinned
    classes exist but must stay 1 (``pinned`` marks them). The caller's model is not touched."""

    def __init__(self, model: nn.Module, example_inputs: Any, *, leaf_modules: Sequence[type | str] = ()) -> None:
        super().__init__()

        self.model = deepcopy_module(model)
        self.example_inputs = compiler.as_inputs(example_inputs)
        self.leaf_modules = tuple(leaf_modules)
        a = compiler.analyse(self.model, self.example_inputs, leaf_modules=leaf_modules)
        self.cg = a.cg
        self.groups: list[Group] = [g for g in a.cg.groups() if not g.pinned.all()]
        sizes = [g.size for g in self.groups]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_slots = int(self.offsets[-1])
        pinned = np.concatenate([g.pinned for g in self.groups]) if self.groups else np.zeros(0, dtype=bool)
        self.register_buffer("pinned", torch.from_numpy(pinned), persistent=False)
        self.register_buffer("mask", torch.ones(self.n_slots))
        slot = np.full(a.cg.uf.n, self.n_slots, dtype=np.int64)  # n_slots: the constant-one slot
        for i, g in enumerate(self.groups):
            slot[g.classes] = self.offsets[i] + np.arange(g.size)
        self._slot_of_root = slot
        self._source = _Source()
        self._plain = _Plain(a.traced.eval_gm, a.module_names, a.parameters)
        self.entries = self._channel_entries()
        self.eval_gm = self._gate(a.traced.eval_gm, "eval")
        self.train_gm = self._gate(a.traced.train_gm, "train") if a.traced.train_gm is not None else None
        self.train(model.training)

    # -- graph --------------------------------------------------------------------------------
    def _gate(self, gm: fx.GraphModule, tag: str) -> fx.GraphModule:
        graph = copy.deepcopy(gm.graph)
        gates: dict[str, Gate] = {}
        roots = self.cg.roots
        count = 0
        for node in list(graph.nodes):
            factors, shape = node.meta.get(FACTORS), node_shape(node)
            if node.op in ("placeholder", "output", "get_attr") or shape is None or not isinstance(factors, tuple):
                continue
            for f in factors:
                slots = self._slot_of_root[roots[f.ids]]
                if (slots == self.n_slots).all():
                    continue
                bshape = [1] * len(shape)
                for ax in f.axes:
                    bshape[ax] = shape[ax]
                name = f"fxprune_gates.g{count}"
                count += 1
                gates[name] = Gate(self._source, torch.from_numpy(slots.ravel().copy()), bshape)
                users = list(node.users)
                with graph.inserting_after(node):
                    gated = graph.call_module(name, (node,))
                for u in users:
                    u.replace_input_with(node, gated)
                node = gated
        root: dict[str, Any] = dict(gates)  # plus the (copied) model's own modules and tensors, shared
        for n in graph.nodes:
            if n.op in ("call_module", "get_attr") and n.target not in root:
                root[n.target] = lookup_attr(gm, n.target)
        return fx.GraphModule(root, graph, f"Gated{tag.capitalize()}")

    def _channel_entries(self) -> ChannelEntries:
        params, names, axes, positions, slots, filters = [], [], [], [], [], []
        for i, g in enumerate(self.groups):
            producers = set(g.producers)
            producer_modules = set(g.producer_modules)
            for key in g.members:
                name, axis = key
                if name not in self._plain.parameters:
                    continue
                pos, cls = self.cg.positions(g, key)
                owner = name.rsplit(".", 1)[0] if "." in name else ""
                params.append(self.cg.tensors[name])
                names.append(name)
                axes.append(axis)
                positions.append(torch.from_numpy(pos.astype(np.int64)))
                slots.append(torch.from_numpy((self.offsets[i] + cls).astype(np.int64)))
                filters.append(f"{name}@{axis}" in producers or (name.endswith(".bias") and owner in producer_modules))
        return ChannelEntries(params, names, axes, positions, slots, filters)

    # -- costs --------------------------------------------------------------------------------
    def id_keep(self, v: torch.Tensor) -> torch.Tensor:
        """The per-id keep vector of the cost models for slot values ``v`` (constant ids: 1)."""
        full = torch.cat([v.to(torch.float64), v.new_ones(1, dtype=torch.float64)])
        return full[torch.from_numpy(self._slot_of_root).to(full.device)]

    @property
    def macs_model(self):
        """The MACs cost model of the (dense) network over channel ids (built once)."""
        if self._plain.macs is None:

            self._plain.macs = macs_model(self.cg, self._plain.gm)
        return self._plain.macs

    def expected_macs(self, v: torch.Tensor | None = None) -> torch.Tensor:
        """MACs as a differentiable function of the slot values (default: the current gates);
        exact for 0/1 values."""
        v = self.gate_vector() if v is None else v
        return self.macs_model(self.id_keep(v.cpu()))

    def macs_ratio(self, v: torch.Tensor | None = None) -> float:
        return float(self.expected_macs(v).detach()) / self.macs_model.dense

    def resolution_from_plan(self, plan: Any, adjust: Any = None, comparable: bool | None = None) -> Resolution:
        """Resolve ``plan`` on the current weights (see ``planner.resolve``'s ``adjust``)."""

        return resolve(plan, self.cg, module_names=self._plain.module_names, parameters=self._plain.parameters,
                       model=self.model, gm=self._plain.gm, adjust=adjust, comparable=comparable)

    def slot_mask_of(self, resolution: Resolution) -> torch.Tensor:
        """Bool per slot: kept by ``resolution``."""
        keep = torch.zeros(self.n_slots, dtype=torch.bool)
        for i, g in enumerate(self.groups):
            choice = resolution.groups.get(g.key)
            idx = np.arange(g.size) if choice is None else np.asarray(choice.keep, dtype=np.int64)
            keep[torch.from_numpy(self.offsets[i] + idx)] = True
        return keep

    # -- gates --------------------------------------------------------------------------------
    def gate_vector(self) -> torch.Tensor:
        """The gate value of every slot (default: the ``mask`` buffer). Override for relaxed gates."""
        return self.mask

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        v = self.gate_vector()
        self._source.vector = torch.cat([v, v.new_ones(1)])
        gm = self.train_gm if (self.training and self.train_gm is not None) else self.eval_gm
        return gm(*args, **kwargs)

    def group_slice(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    # -- hard model ---------------------------------------------------------------------------
    def resolution_from_gates(self, threshold: float = 0.0) -> Resolution:
        """Kept classes = gate > ``threshold`` (pinned classes always kept). A group, or a tensor
        (one output of a split, say), that would lose every channel keeps its highest-gated one."""
        with torch.no_grad():
            v = self.gate_vector().detach().cpu().numpy()
        scores = {g.index: v[self.group_slice(i)].astype(np.float64) for i, g in enumerate(self.groups)}
        keep = {g.index: scores[g.index] > threshold for g in self.groups}
        return resolution_from_keep(self.cg, self.groups, keep, scores)

    def finalize(self, threshold: float = 0.0, **compile_kwargs: Any):
        """The physically smaller model: the trained weights with the classes whose gate is
        ``<= threshold`` removed (verified against the masked model as every compile is). Gates
        with values other than 0/1 are not folded into the weights: binarise them first. The
        ``mask`` buffer is updated to what was kept (a class kept so that no tensor is empty is
        switched back on), so the gated model stays equal to the result."""

        res = self.resolution_from_gates(threshold)
        with torch.no_grad():
            self.mask.copy_(self.slot_mask_of(res).to(self.mask.dtype))
        return compiler.compile(self.model, resolution=res, example_inputs=self.example_inputs,
                          leaf_modules=self.leaf_modules, **compile_kwargs)
