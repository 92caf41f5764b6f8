"""The size-read policy: a channel count read off a tensor (``x.size(1)``, ``x.shape``) may only
size channel axes of view/reshape/expand/split, whose slots the rewrite replaces by literal
pruned widths; any other use pins the axis it was read from."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

from ..capture.meta import describe_target, node_shape
from .channel_graph import ChannelGraph
from .factors import FACTORS, factor_on

__all__ = ["check_size_reads"]

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


def check_size_reads(cg: ChannelGraph) -> None:
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
