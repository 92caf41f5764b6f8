"""The interfaces a rule is written against: ``RuleContext`` (what ``propagate`` sees of one node
while the channel graph is built) and ``CostContext`` (what a cost formula sees: shapes, the
called module and, when the count is a cost model over kept channels, the channel ids)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ...capture.meta import describe_target, map_meta, node_shape, submodule, tensor_meta
from ...errors import TraceError
from ..channel_graph import ChannelGraph
from ..factors import FACTORS, NO_FACTORS, Factor, Factors, factor_on, iter_factors
from ..params import is_parametrized, lookup_tensor, weight_norm_of

__all__ = ["CostContext", "RuleContext", "tensor_label"]

_MISSING = object()


def node_arg(node: fx.Node, index: int | None, name: str | None = None, default: Any = _MISSING,
             op: str | None = None) -> Any:
    """Argument ``index`` of ``node`` (or keyword ``name``); ``default`` when absent, else a
    TraceError naming the node."""
    if index is not None and len(node.args) > index:
        return node.args[index]
    if name is not None and name in node.kwargs:
        return node.kwargs[name]
    if default is _MISSING:
        raise TraceError(f"node `{node.name}`{f' ({op})' if op else ''}: missing argument {name or index}")
    return default


def tensor_label(node: Any) -> str:
    """A tensor as a group producer: its attribute path when it is a parameter read (so the group
    is keyed, and ``Plan.overrides`` / ``ignore`` find it, by its module), else the node's name."""
    return str(node.target) if getattr(node, "op", None) == "get_attr" else getattr(node, "name", str(node))


class RuleContext:
    """What a rule sees of one node: its inputs' factors and shapes, and the union-find."""

    def __init__(self, cg: ChannelGraph, gm: fx.GraphModule, node: fx.Node):
        self.cg, self.gm, self.node = cg, gm, node

    # inputs -------------------------------------------------------------------------------
    def arg(self, index: int | None, name: str | None = None, default: Any = _MISSING) -> Any:
        return node_arg(self.node, index, name, default, self.op)

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

    def constant_along(self, ids: np.ndarray, axes: Any) -> None:
        """Union ``ids`` along array ``axes``: the class then covers whole slices along them, so
        those tensor axes never lose a position (q/k/v of a packed projection, a head's dims)."""
        for k in axes:
            self.union(ids, np.broadcast_to(ids.take([0], axis=k), ids.shape))

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


class CostContext:
    """What a cost formula sees of one node.

    ``shape`` gives shapes as counted — the dense ones, or the pruned ones when a report counts
    the compiled model — and ``module`` the module as counted. The id accessors return the channel
    ids of an axis when counting against a channel graph (the cost model of budgets, CPMC, DAIS)
    and empty lists otherwise, so one formula gives both the exact count and the cost terms."""

    def __init__(self, node: fx.Node, shape_of: Callable[[Any], tuple[int, ...] | None] = node_shape,
                 module_of: Callable[[str], nn.Module] | None = None, cg: ChannelGraph | None = None):
        self.node, self._shape_of, self._module_of, self.cg = node, shape_of, module_of, cg

    def arg(self, index: int | None, name: str | None = None, default: Any = _MISSING) -> Any:
        return node_arg(self.node, index, name, default)

    def shape(self, x: Any = None) -> tuple[int, ...] | None:
        return self._shape_of(self.node if x is None else x)

    @property
    def out_shape(self) -> tuple[int, ...]:
        s = self.shape()
        if s is None:
            raise TraceError(f"node `{self.node.name}` has no tensor output")
        return s

    def module(self) -> nn.Module:
        if self._module_of is None:
            raise TraceError(f"node `{self.node.name}`: no module table to count `{self.node.target}`")
        return self._module_of(self.node.target)

    # channel ids (empty when only counting) -------------------------------------------------
    def _factors(self, x: Any) -> Factors:
        if self.cg is None or not isinstance(x, fx.Node):
            return NO_FACTORS
        f = x.meta.get(FACTORS)
        return f if isinstance(f, tuple) else NO_FACTORS

    def ids(self, x: Any = None) -> list[np.ndarray]:
        """Ids of every channel factor of ``x`` (the node's own output when None)."""
        return [f.ids for f in self._factors(self.node if x is None else x)]

    def axis_ids(self, x: Any, axis: int) -> list[np.ndarray]:
        """Ids of the factor on ``axis`` of ``x`` (negative axes count from the end)."""
        shape = node_shape(x)
        if shape is None:
            return []
        f = factor_on(self._factors(x), axis % len(shape))
        return [f.ids] if f is not None else []

    def roots(self, ids: np.ndarray) -> set[int]:
        return set(np.unique(self.cg.roots[ids]).tolist()) if self.cg is not None else set()

    def param_ids(self, pname: str = "weight") -> list[np.ndarray]:
        """Ids of every channel axis of the called module's parameter ``pname`` (for a weight-
        normalised layer, of ``v``: its channels live there)."""
        if self.cg is None:
            return []
        target = self.node.target
        m = self.module()
        norm = weight_norm_of(m, pname)
        try:
            name = self.cg.canonical(f"{target}.{norm[1]}" if norm is not None else f"{target}.{pname}")
        except KeyError:
            return []
        t = self.cg.tensors[name]
        return [self.cg.param_axes[(name, a)] for a in range(t.ndim) if (name, a) in self.cg.param_axes]
