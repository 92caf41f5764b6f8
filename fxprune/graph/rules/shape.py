"""Shape ops: view/reshape/flatten, permute/transpose, (un)squeeze, expand/repeat, cat/stack,
split/chunk, indexing.

These move channel factors between axes without touching values. Their rewriters update the
shape constants the graph carries (``view(b, 256, -1)``, ``split([64, 64])``, ``x[:, :64]``) to
the pruned widths; sizes computed at run time (``x.size(1)``) need no rewrite.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .. import factors as fct
from .context import RuleContext
from ...capture.meta import tensor_meta
from ..factors import FACTORS, Factor, Factors, factor_on
from .pointwise import aligned, union_aligned
from .registry import NO_MACS, Example, rand, register_rule

__all__ = ["attribute", "cat", "expand", "permute", "repeat", "reshape", "squeeze", "stack", "unsqueeze"]


def _pinner(ctx: RuleContext):
    return lambda ids, reason: ctx.pin(ids, reason)


def _size_args(node: fx.Node, first: int = 1, kw: Sequence[str] = ("shape", "size")) -> tuple[list[Any], str]:
    """Sizes given to view/reshape/expand as varargs or as one sequence; and where they live."""
    rest = node.args[first:]
    if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        return list(rest[0]), "seq"
    if rest:
        return list(rest), "varargs"
    for k in kw:
        if k in node.kwargs:
            return list(node.kwargs[k]), k
    return [], "varargs"


def _set_size_args(node: fx.Node, sizes: list[Any], where: str, first: int = 1) -> None:
    if where == "seq":
        node.args = tuple(node.args[:first]) + (tuple(sizes),)
    elif where == "varargs":
        node.args = tuple(node.args[:first]) + tuple(sizes)
    else:
        kwargs = dict(node.kwargs)
        kwargs[where] = tuple(sizes)
        node.kwargs = kwargs


def _replace_literals(sizes: Sequence[Any], kept: Sequence[int]) -> list[Any]:
    """Int sizes (but -1) become the pruned widths; sizes computed in the graph stay."""
    return [kept[i] if isinstance(s, int) and not isinstance(s, bool) and s != -1 else s
            for i, s in enumerate(sizes)]


def _channel_sizes(sizes: Sequence[Any], kept: Sequence[int], channel_axes: set[int]) -> list[Any]:
    """Sizes of channel axes become the pruned widths as literals, also where the graph computes
    them (``c // heads`` may be read off another, differently pruned tensor); channel widths are
    fixed by the weights, so nothing dynamic is lost. Other axes keep what they had."""
    out = list(sizes)
    for i, s in enumerate(sizes):
        if i in channel_axes and not (isinstance(s, int) and s == -1):
            out[i] = kept[i]
    return out


def _factor_axes(node: fx.Node) -> set[int]:
    f = node.meta.get(FACTORS)
    return {a for g in f for a in g.axes} if isinstance(f, tuple) else set()


# ---- reshape family ------------------------------------------------------------------------------
@register_rule(methods=["view", "reshape", "flatten", "unflatten", "view_as", "reshape_as"],
               functions=[torch.reshape, torch.flatten, torch.unflatten],
               modules=[nn.Flatten, nn.Unflatten], cost=NO_MACS, example=lambda g: [
                   Example(lambda x: x.view(x.size(0), 6, -1), (rand(g, 2, 6, 4, 4),)),
                   Example(lambda x: torch.flatten(x, 1), (rand(g, 2, 6, 3, 3),)),
                   Example(lambda x: x.reshape(2, 2, 3, 9).sum(1), (rand(g, 2, 6, 3, 3),))])
def reshape(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    if ctx.node.op == "call_method" and ctx.node.target == "view" and len(ctx.node.args) == 2 \
            and isinstance(ctx.node.args[1], torch.dtype):
        return ctx.barrier("view as another dtype")
    out_shape = ctx.out_shape
    factors = fct.reshape(ctx.factors(x), ctx.shape(x), out_shape, _pinner(ctx), "reshape")
    if ctx.node.op == "call_method" and ctx.node.target in ("view_as", "reshape_as"):
        other = aligned(ctx, ctx.arg(1, "other"), len(out_shape))
        return union_aligned(ctx, [(out_shape, list(factors)), other], out_shape, "view_as")
    return factors


@reshape.rewriter
def _rewrite_reshape(r) -> None:
    node = r.old
    kept = r.kept_shape(node)
    if node.op == "call_module":
        if kept == r.dense_shape(node):
            return
        mod = r.module()
        if isinstance(mod, nn.Unflatten):
            dim = mod.dim % len(kept)
            mod.unflattened_size = tuple(kept[dim:dim + len(mod.unflattened_size)])
        return
    target = node.target
    new = r.new  # read arguments from the new node: they reference the new graph's nodes
    if target in ("view", "reshape") or target is torch.reshape:
        sizes, where = _size_args(new)
        _set_size_args(new, _channel_sizes(sizes, kept, _factor_axes(node)), where)
    elif kept == r.dense_shape(node):
        return
    elif target in ("unflatten",) or target is torch.unflatten:
        dim = new.args[1] if len(new.args) > 1 else new.kwargs["dim"]
        sizes = new.args[2] if len(new.args) > 2 else new.kwargs["sizes"]
        dim %= len(kept)
        new_sizes = tuple(_replace_literals(sizes, kept[dim:dim + len(sizes)]))
        if len(node.args) > 2:
            r.new.args = tuple(r.new.args[:2]) + (new_sizes,) + tuple(r.new.args[3:])
        else:
            r.new.kwargs = {**r.new.kwargs, "sizes": new_sizes}


# ---- permutations -----------------------------------------------------------------------------
@register_rule(methods=["permute", "transpose", "transpose_", "swapaxes", "swapdims", "t", "movedim",
                        "moveaxis"],
               cost=NO_MACS, example=lambda g: [Example(lambda x: x.permute(0, 2, 3, 1), (rand(g, 2, 6, 3, 4),), out_axis=3),
                                                Example(lambda x: x.transpose(1, 2), (rand(g, 2, 6, 5),), out_axis=2)],
               functions=[torch.permute, torch.transpose, torch.swapaxes, torch.swapdims, torch.t,
                          torch.movedim, torch.moveaxis])
def permute(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    nd = len(ctx.shape(x))
    name = ctx.node.target if ctx.node.op == "call_method" else ctx.node.target.__name__
    if name == "permute":
        dims = ctx.node.args[1:] if len(ctx.node.args) > 2 else ctx.arg(1, "dims")
        perm = [d % nd for d in dims]
    elif name == "t":
        perm = list(range(nd))[::-1]
    elif name in ("movedim", "moveaxis"):
        src, dst = ctx.arg(1, "source"), ctx.arg(2, "destination")
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        src, dst = [s % nd for s in src], [d % nd for d in dst]
        rest = [a for a in range(nd) if a not in src]
        perm = [None] * nd
        for s, d in zip(src, dst):
            perm[d] = s
        it = iter(rest)
        perm = [p if p is not None else next(it) for p in perm]
    else:
        d0, d1 = ctx.arg(1, "dim0") % nd, ctx.arg(2, "dim1") % nd
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return fct.permute(ctx.factors(x), perm)


@register_rule(functions=[getattr], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.mT, (rand(g, 2, 6, 5),), out_axis=2))
def attribute(ctx: RuleContext) -> Any:
    """``x.mT`` / ``x.T`` move channels; ``x.shape`` and friends carry none."""
    x, name = ctx.node.args[0], ctx.node.args[1]
    shape = ctx.shape(x)
    if name in ("mT", "mH") and shape is not None:
        perm = list(range(len(shape)))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        return fct.permute(ctx.factors(x), perm)
    if name == "T" and shape is not None:
        return fct.permute(ctx.factors(x), list(range(len(shape)))[::-1])
    if name in ("real", "imag", "data"):
        return ctx.factors(x)
    if ctx.shape() is not None:
        return ctx.barrier(f"tensor attribute `{name}`")
    return None


# ---- (un)squeeze -------------------------------------------------------------------------------
@register_rule(methods=["unsqueeze", "unsqueeze_"], functions=[torch.unsqueeze], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.unsqueeze(2), (rand(g, 2, 6, 5),)))
def unsqueeze(ctx: RuleContext) -> Factors:
    dim = ctx.arg(1, "dim") % len(ctx.out_shape)
    return fct.unsqueeze(ctx.factors(ctx.arg(0, "input")), dim)


@register_rule(methods=["squeeze", "squeeze_"], functions=[torch.squeeze], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.squeeze(2), (rand(g, 2, 6, 1, 5),)))
def squeeze(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    shape = ctx.shape(x)
    dim = ctx.arg(1, "dim", None)
    if dim is None:
        dims = [a for a, s in enumerate(shape) if s == 1]
    else:
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [d % len(shape) for d in dims if shape[d % len(shape)] == 1]
    return fct.squeeze(ctx.factors(x), dims, _pinner(ctx), "squeeze of a one-channel axis")


# ---- expand / repeat --------------------------------------------------------------------------------
@register_rule(methods=["expand"], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.expand(2, 6, 3, 3), (rand(g, 2, 6, 1, 1),)))
def expand(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    shape, out = ctx.shape(x), ctx.out_shape
    lead = len(out) - len(shape)
    result = []
    for f in ctx.factors(x):
        if any(shape[a] == 1 and out[a + lead] > 1 for a in f.axes):
            ctx.pin(f.ids, "expand of a one-channel axis")
            continue
        result.append(f.with_axes([a + lead for a in f.axes]))
    return tuple(result)


@expand.rewriter
def _rewrite_expand(r) -> None:
    sizes, where = _size_args(r.new)
    _set_size_args(r.new, _channel_sizes(sizes, r.kept_shape(r.old), _factor_axes(r.old)), where)


@register_rule(methods=["repeat"], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.repeat(1, 1, 2, 2), (rand(g, 2, 6, 2, 2),)))
def repeat(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    shape = ctx.shape(x)
    reps, _ = _size_args(ctx.node)
    lead = len(reps) - len(shape)
    out = []
    for f in ctx.factors(x):
        tile = [reps[a + lead] for a in f.axes]
        if not all(isinstance(t, int) for t in tile):
            ctx.pin(f.ids, "repeat by a computed count")
            continue
        out.append(Factor(tuple(a + lead for a in f.axes), np.tile(f.ids, tile)))
    return tuple(out)


# ---- cat / stack --------------------------------------------------------------------------------------
@register_rule(functions=[torch.cat, torch.concat, torch.concatenate], cost=NO_MACS, example=lambda g: Example(
    lambda x, y: torch.cat([x, y], 1), (rand(g, 2, 6, 3, 3), rand(g, 2, 4, 3, 3)), channels=(0, 1)))
def cat(ctx: RuleContext) -> Factors:
    tensors = [t for t in ctx.arg(0, "tensors") if ctx.shape(t) is not None]
    out_shape = ctx.out_shape
    dim = ctx.arg(1, "dim", 0) % len(out_shape)
    parts = [(ctx.factors(t), ctx.shape(t)) for t in tensors]
    multi = [factor_on(factors, dim) for factors, _ in parts]
    multi = [f if f is not None and len(f.axes) > 1 else None for f in multi]
    if all(f is not None for f in multi) and len({f.axes for f in multi}) == 1 and len(
            {tuple(n for k, n in enumerate(f.ids.shape) if f.axes[k] != dim) for f in multi}) == 1:
        # halves of a head dim put back together (rotary ``cat([-x2, x1], -1)``): ids side by side
        k = multi[0].axes.index(dim)
        along = Factor(multi[0].axes, np.concatenate([f.ids for f in multi], axis=k))
        others = [tuple(g for g in factors if g is not f) for (factors, _), f in zip(parts, multi)]
    else:
        for f in multi:
            if f is not None:
                ctx.pin(f.ids, "cat along an axis of a multi-axis channel factor")
        along, others = fct.concat(parts, dim, lambda n: ctx.fresh(n, pinned=True))
    rest = union_aligned(ctx, [(s, list(o)) for (_, s), o in zip(parts, others)], out_shape, "cat")
    return tuple(sorted(rest + ((along,) if along is not None else ()), key=lambda f: f.axes))


@register_rule(functions=[torch.stack], cost=NO_MACS, example=lambda g: Example(
    lambda x, y: torch.stack([x, y], 2), (rand(g, 2, 6, 3, 3), rand(g, 2, 6, 3, 3)), channels=(0, 1)))
def stack(ctx: RuleContext) -> Factors:
    tensors = ctx.arg(0, "tensors")
    out_shape = ctx.out_shape
    dim = ctx.arg(1, "dim", 0) % len(out_shape)
    present = []
    for t in tensors:
        s = ctx.shape(t)
        if s is None:
            continue
        fs = fct.unsqueeze(ctx.factors(t), dim)
        present.append((s[:dim] + (1,) + s[dim:], list(fs)))
    return union_aligned(ctx, present, out_shape, "stack")
