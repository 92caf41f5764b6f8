"""Pointwise ops: channels pass through unary ops; n-ary ops union channels position by position.

Zeroing a channel on every tensor of its class is exactly what removing it does for these ops,
whatever f(0) is, because the masked reference masks the op's output too.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .context import RuleContext
from ..factors import Factor, Factors
from .registry import NO_MACS, Example, rand, register_rule

__all__ = ["aligned", "broadcast_union", "elementwise", "unary", "union_aligned"]

_UNARY_MODULES = [
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh,
    nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold,
    nn.LogSigmoid, nn.Hardshrink, nn.Softshrink, nn.RReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
]
_UNARY_FUNCTIONS = [
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.hardtanh,
    F.hardtanh_, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.mish, F.softplus, F.softsign,
    F.logsigmoid, F.tanhshrink, F.threshold, F.rrelu, F.hardshrink, F.softshrink, torch.sigmoid, F.sigmoid,
    torch.tanh, F.tanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.feature_alpha_dropout, torch.abs, torch.neg, torch.exp, torch.log, torch.sqrt, torch.rsqrt,
    torch.square, torch.sin, torch.cos, torch.erf, torch.clamp, torch.clip, torch.nan_to_num, torch.sign,
    torch.round, torch.floor, torch.ceil, torch.reciprocal, torch.log1p, torch.expm1, torch.clone,
    torch.detach, operator.neg, operator.pos, operator.abs, operator.invert, torch.logical_not,
    torch.bitwise_not,
]
_UNARY_METHODS = [
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_",
    "clamp_min", "clamp_max", "abs", "abs_", "neg", "neg_", "exp", "exp_", "log", "sqrt", "rsqrt",
    "square", "sin", "cos", "erf", "sign", "round", "floor", "ceil", "reciprocal", "log1p", "expm1",
    "contiguous", "clone", "detach", "detach_", "float", "half", "double", "bfloat16", "int", "long",
    "bool", "to", "type_as", "cpu", "cuda", "requires_grad_", "nan_to_num", "logical_not",
    "hardtanh", "hardtanh_", "zero_", "fill_", "softplus", "gelu", "silu", "mish",
]
try:  # torchvision's stochastic depth scales whole samples: channels pass through
    from torchvision.ops import StochasticDepth, stochastic_depth

    _UNARY_MODULES.append(StochasticDepth)
    _UNARY_FUNCTIONS.append(stochastic_depth)
except ImportError:  # pragma: no cover - torchvision is a dependency
    pass


@register_rule(modules=_UNARY_MODULES, functions=_UNARY_FUNCTIONS, methods=_UNARY_METHODS, cost=NO_MACS,
               example=lambda g: [Example(nn.ReLU(), (rand(g, 2, 6, 4, 4),)), Example(torch.sigmoid, (rand(g, 2, 6, 5),)),
                                  Example(lambda x: x.exp(), (rand(g, 2, 6, 3, 3),))])
def unary(ctx: RuleContext) -> Factors:
    return ctx.factors(ctx.arg(0, "input"))


def aligned(ctx: RuleContext, x: Any, nd: int, offset_axes: int | None = None) -> tuple[tuple[int, ...], list[Factor]] | None:
    """Shape and factors of input ``x`` right-aligned to an ``nd``-d output (None: not a tensor)."""
    s = ctx.shape(x)
    if s is None:
        return None
    off = nd - len(s)
    return (1,) * off + s, [f.with_axes([a + off for a in f.axes]) for f in ctx.factors(x)]


def union_aligned(ctx: RuleContext, present: Sequence[tuple[tuple[int, ...], list[Factor]]],
                  out_shape: Sequence[int], reason: str) -> Factors:
    """Union the channel factors of tensors combined position by position (already aligned to
    the output's axes).

    Factors over the same axes are unioned. A tensor without a factor there that is not
    broadcast along those axes is fixed data (a constant), so the channels it meets are pinned —
    or, for a factor over several axes of which the data varies along some only, made constant
    along those; so is a one-channel factor that broadcasts to many."""
    by_axes: dict[tuple[int, ...], list[Factor]] = {}
    owner: dict[int, int] = {}  # id(factor) -> index of its tensor in present
    for i, (_, fs) in enumerate(present):
        for f in fs:
            by_axes.setdefault(f.axes, []).append(f)
            owner[id(f)] = i
    merged = _merge_subsets(ctx, by_axes, owner, out_shape, reason)
    keys = list(by_axes)
    overlapping = {a for a in keys for b in keys if a != b and set(a) & set(b)}
    out: list[Factor] = []
    for axes, fs in by_axes.items():
        if axes in overlapping:
            for f in fs:
                ctx.pin(f.ids, f"{reason}: channel factors of the operands overlap")
            continue
        want = tuple(out_shape[a] for a in axes)
        full = [f for f in fs if f.ids.shape == want]
        for f in fs:
            if f.ids.shape != want:
                ctx.pin(f.ids, f"{reason}: a broadcast channel cannot be removed")
        if not full:
            continue
        rep = full[0].ids
        for f in full[1:]:
            ctx.union(rep, f.ids)
        fixed = {k for i, (shape, fs2) in enumerate(present)
                 if not any(g.axes == axes for g in fs2) and i not in merged.get(axes, ())
                 for k, a in enumerate(axes) if shape[a] > 1}
        if len(fixed) == len(axes):
            ctx.pin(rep, f"{reason}: combined with a tensor that carries no channels on this axis")
            continue
        # a factor over several axes met by data that varies along some of them only (rotary
        # cos/sin: along head_dim, the same for every head): keep those axes whole
        ctx.constant_along(rep, sorted(fixed))
        out.append(Factor(axes, rep))
    return tuple(sorted(out, key=lambda f: f.axes))


def _merge_subsets(ctx: RuleContext, by_axes: dict[tuple[int, ...], list[Factor]], owner: dict[int, int],
                   out_shape: Sequence[int], reason: str) -> dict[tuple[int, ...], set[int]]:
    """A factor over a proper subset of the axes of one other factor (a per-head gate against
    heads x head_dim, rotary frequencies along head_dim against q): broadcast into it and
    unioned — except, when whole heads are pruned, one along the last axis of the bigger factor
    (its head dim): that one is data the heads keep whole, so the bigger factor is made constant
    along it and the small factor's channels are kept. Returns, per bigger factor, the tensors
    merged into it."""
    merged: dict[tuple[int, ...], set[int]] = {}
    for small in sorted(by_axes, key=len):
        bigger = [b for b in by_axes if b != small and set(small) < set(b)]
        if small not in by_axes or len(bigger) != 1:
            continue
        big = bigger[0]
        want = tuple(out_shape[a] for a in big)
        reps = [f.ids for f in by_axes[big] if f.ids.shape == want]
        if not reps:
            continue
        ks = [big.index(a) for a in small]
        for f in by_axes[small]:
            if f.ids.shape != tuple(out_shape[a] for a in small):
                ctx.pin(f.ids, f"{reason}: a broadcast channel cannot be removed")
            elif ctx.cg.attention == "heads" and len(big) - 1 in ks:
                ctx.constant_along(reps[0], ks)
                ctx.pin(f.ids, f"{reason}: varies along the head dim, which whole-head pruning keeps")
            else:
                view = [out_shape[a] if a in small else 1 for a in big]
                ctx.union(reps[0], np.broadcast_to(f.ids.reshape(view), want))
            merged.setdefault(big, set()).add(owner[id(f)])
        del by_axes[small]
    return merged


def broadcast_union(ctx: RuleContext, inputs: Sequence[Any], reason: str) -> Factors:
    """``union_aligned`` for tensors combined with numpy broadcasting."""
    out_shape = ctx.out_shape
    present = [p for p in (aligned(ctx, x, len(out_shape)) for x in inputs) if p is not None]
    return union_aligned(ctx, present, out_shape, reason)


_BINARY_FUNCTIONS = [
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow, operator.mod,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.and_, operator.or_,
    operator.xor, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
    torch.true_divide, torch.maximum, torch.minimum, torch.fmax, torch.fmin, torch.pow, torch.fmod,
    torch.remainder, torch.atan2, torch.where, torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge,
    torch.logical_and, torch.logical_or, torch.logical_xor, torch.lerp, torch.addcmul, torch.addcdiv,
    torch.hypot, torch.copysign, torch.masked_fill,
]
_BINARY_METHODS = [
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "true_divide", "pow", "pow_",
    "maximum", "minimum", "fmod", "remainder", "where", "eq", "ne", "lt", "le", "gt", "ge",
    "logical_and", "logical_or", "lerp", "lerp_", "addcmul", "addcmul_", "addcdiv", "masked_fill",
    "masked_fill_", "expand_as", "copy_", "__and__", "__or__",
]


@register_rule(functions=_BINARY_FUNCTIONS, methods=_BINARY_METHODS, cost=NO_MACS, example=lambda g: [
    Example(operator.add, (rand(g, 2, 6, 4, 4), rand(g, 2, 6, 4, 4)), channels=(0, 1)),
    Example(lambda x, s: x * s, (rand(g, 2, 6, 4, 4), rand(g, 2, 6, 1, 1)), channels=(0, 1)),
    Example(lambda x: x.add(1.0), (rand(g, 2, 6, 3),))])
def elementwise(ctx: RuleContext) -> Any:
    node = ctx.node
    if ctx.shape() is None:  # torch.where(cond) returns index tensors
        return ctx.barrier("elementwise op with a non-tensor result")
    inputs = list(node.args) + [v for k, v in node.kwargs.items() if k in ("other", "input", "tensor1",
                                                                         "tensor2", "mask", "end", "weight")]
    return broadcast_union(ctx, inputs, "elementwise op")
