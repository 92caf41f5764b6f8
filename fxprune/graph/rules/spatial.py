"""Ops over spatial axes (pooling, resizing, padding, pixel shuffle) and reductions.

Spatial ops keep channels; a channel factor on a spatial axis is pinned. Reductions and
normalisations *over* a channel axis (mean/sum/max over C, softmax over C) compute a statistic
of all channels, so removing one changes the result: those channels are pinned.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import factors as fct
from .context import RuleContext
from ...capture.meta import multi_meta, tensor_meta
from ..factors import NO_FACTORS, Factor, Factors
from .pointwise import elementwise
from .registry import NO_MACS, Example, rand, register_rule

__all__ = ["along_axis", "channel_shuffle", "new_tensor", "normalize", "pad", "roll", "pixel_shuffle", "pixel_unshuffle", "reduction",
           "resize"]

_SPATIAL_MODULES = {
    1: [nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.LPPool1d,
        nn.ReflectionPad1d, nn.ReplicationPad1d, nn.ConstantPad1d, nn.ZeroPad1d, nn.CircularPad1d],
    2: [nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d,
        nn.FractionalMaxPool2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ConstantPad2d, nn.ZeroPad2d,
        nn.CircularPad2d],
    3: [nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d, nn.FractionalMaxPool3d,
        nn.ReflectionPad3d, nn.ReplicationPad3d, nn.ConstantPad3d, nn.ZeroPad3d, nn.CircularPad3d],
}
_SPATIAL_FUNCTIONS = {
    1: [F.max_pool1d, F.avg_pool1d, F.adaptive_avg_pool1d, F.adaptive_max_pool1d, F.lp_pool1d],
    2: [F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.lp_pool2d,
        torch.max_pool2d, F.max_pool2d_with_indices, F.adaptive_max_pool2d_with_indices],
    3: [F.max_pool3d, F.avg_pool3d, F.adaptive_avg_pool3d, F.adaptive_max_pool3d],
}


def _pass_other_axes(ctx: RuleContext, x: Any, mixed: set[int], reason: str) -> Factors:
    """The factors of ``x`` that avoid the ``mixed`` axes; those on them are pinned."""
    out = []
    for f in ctx.factors(x):
        if mixed & set(f.axes):
            ctx.pin(f.ids, reason)
        else:
            out.append(f)
    return tuple(out)


def _keep_leading(ctx: RuleContext, x: Any, n_spatial: int, what: str) -> Factors:
    nd = len(ctx.shape(x))
    return _pass_other_axes(ctx, x, set(range(nd - n_spatial, nd)), f"{what} mixes positions of this axis")


def _spatial_rule(n_spatial: int):
    def spatial(ctx: RuleContext) -> Any:
        factors = _keep_leading(ctx, ctx.arg(0, "input"), n_spatial, "pooling/padding")
        multi = multi_meta(ctx.node)
        return [factors for _ in multi] if multi is not None else factors

    spatial.__name__ = f"spatial{n_spatial}d"
    return spatial


_SPATIAL_EXAMPLES = {
    1: lambda g: Example(nn.MaxPool1d(2), (rand(g, 2, 6, 8),)),
    2: lambda g: [Example(nn.AvgPool2d(2), (rand(g, 2, 6, 6, 6),)), Example(nn.ZeroPad2d(1), (rand(g, 2, 6, 3, 3),)),
                  Example(lambda x: F.adaptive_avg_pool2d(x, 1), (rand(g, 2, 6, 5, 5),))],
    3: lambda g: Example(nn.MaxPool3d(2), (rand(g, 1, 6, 4, 4, 4),)),
}
for _n in (1, 2, 3):
    register_rule(modules=_SPATIAL_MODULES[_n], functions=_SPATIAL_FUNCTIONS[_n], cost=NO_MACS,
                  example=_SPATIAL_EXAMPLES[_n])(_spatial_rule(_n))


@register_rule(modules=[nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d],
               functions=[F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear], cost=NO_MACS,
               example=lambda g: Example(lambda x: F.interpolate(x, scale_factor=2.0), (rand(g, 2, 6, 3, 3),)))
def resize(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    return _keep_leading(ctx, x, len(ctx.shape(x)) - 2, "resizing")


@register_rule(functions=[F.pad], cost=NO_MACS,
               example=lambda g: Example(lambda x: F.pad(x, (1, 1, 2, 0)), (rand(g, 2, 6, 3, 3),)))
def pad(ctx: RuleContext) -> Factors:
    """Padded axes are mixed (they gain positions); an axis padded by (0, 0) — Swin pads H and W
    of a channels-last tensor — passes its channels."""
    x = ctx.arg(0, "input")
    widths = list(ctx.arg(1, "pad"))
    nd = len(ctx.shape(x))
    padded = {nd - 1 - k // 2 for k in range(0, len(widths) - 1, 2)
              if not (widths[k] == 0 and widths[k + 1] == 0)}
    return _pass_other_axes(ctx, x, padded, "padding mixes positions of this axis")


@register_rule(functions=[torch.roll], methods=["roll"], cost=NO_MACS, example=lambda g: Example(
    lambda x: torch.roll(x, shifts=(1, -1), dims=(2, 3)), (rand(g, 2, 6, 4, 4),)))
def roll(ctx: RuleContext) -> Factors:
    """A cyclic shift along some axes (Swin's shifted windows): channels on other axes pass."""
    x = ctx.arg(0, "input")
    dims = ctx.arg(2, "dims", None)
    if dims is None:
        return ctx.barrier("roll of the flattened tensor")
    nd = len(ctx.shape(x))
    rolled = {d % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
    return _pass_other_axes(ctx, x, rolled, "roll shifts positions of this axis")


@register_rule(methods=["new_empty", "new_zeros", "new_ones", "new_full"], cost=NO_MACS, example=lambda g: Example(
    lambda x: x + x.new_zeros(x.shape[0], 1, 1, 1), (rand(g, 2, 6, 3, 3),)))
def new_tensor(ctx: RuleContext) -> Factors:
    """``x.new_zeros(size)``: a fresh tensor that takes only dtype and device from ``x``; it
    carries no channels and leaves ``x``'s alone (its size, if read off a channel axis, is
    checked as a size read)."""
    return NO_FACTORS


@register_rule(modules=[nn.PixelShuffle], functions=[F.pixel_shuffle], cost=NO_MACS,
               example=lambda g: Example(nn.PixelShuffle(2), (rand(g, 2, 8, 3, 3),)))
def pixel_shuffle(ctx: RuleContext) -> Factors:
    """Output channel c gathers input channels c*r^2 .. c*r^2+r^2-1 into space: they go together."""
    x = ctx.arg(0, "input")
    r = ctx.module().upscale_factor if ctx.node.op == "call_module" else ctx.arg(1, "upscale_factor")
    nd = len(ctx.shape(x))
    cax = nd - 3
    out = []
    for f in ctx.factors(x):
        if f.axes == (cax,):
            blocks = f.ids.reshape(-1, r * r)
            ctx.union(blocks, np.broadcast_to(blocks[:, :1], blocks.shape))
            out.append(Factor((cax,), blocks[:, 0].copy()))
        elif all(a < cax for a in f.axes):
            out.append(f)
        else:
            ctx.pin(f.ids, "pixel shuffle mixes this axis")
    return tuple(out)


@register_rule(modules=[nn.PixelUnshuffle], functions=[F.pixel_unshuffle], cost=NO_MACS,
               example=lambda g: Example(nn.PixelUnshuffle(2), (rand(g, 2, 4, 4, 4),)))
def pixel_unshuffle(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    r = ctx.module().downscale_factor if ctx.node.op == "call_module" else ctx.arg(1, "downscale_factor")
    cax = len(ctx.shape(x)) - 3
    out = []
    for f in ctx.factors(x):
        if f.axes == (cax,):
            out.append(Factor((cax,), np.repeat(f.ids, r * r)))
        elif all(a < cax for a in f.axes):
            out.append(f)
        else:
            ctx.pin(f.ids, "pixel unshuffle mixes this axis")
    return tuple(out)


@register_rule(modules=[nn.ChannelShuffle], functions=[F.channel_shuffle, F.native_channel_shuffle], cost=NO_MACS,
               example=lambda g: Example(nn.ChannelShuffle(2), (rand(g, 2, 6, 3, 3),)))
def channel_shuffle(ctx: RuleContext) -> Factors:
    """view(g, C/g) -> transpose -> flatten: the same relative position is kept in every group."""
    x = ctx.arg(0, "input")
    g = ctx.module().groups if ctx.node.op == "call_module" else ctx.arg(1, "groups")
    out = []
    for f in ctx.factors(x):
        if f.axes == (1,):
            blocks = f.ids.reshape(g, -1)
            ctx.union(blocks, np.broadcast_to(blocks[:1], blocks.shape))
            out.append(Factor((1,), np.ascontiguousarray(blocks.T).ravel()))
        elif f.axes == (0,):
            out.append(f)
        else:
            ctx.pin(f.ids, "channel shuffle of a spatial axis")
    return tuple(out)


# ---- reductions ----------------------------------------------------------------------------------
_REDUCTIONS = ["mean", "sum", "nansum", "nanmean", "amax", "amin", "max", "min", "var", "std", "prod",
               "logsumexp", "argmax", "argmin", "all", "any", "norm", "count_nonzero", "median"]


_SUMS = {"sum", "nansum", "mean", "norm"}  # unchanged by zeroed channels (mean after its rewrite)


def _reduced_dims(node, shape) -> list[int]:
    name = node.target if node.op == "call_method" else node.target.__name__
    dim_index = 2 if name == "norm" else 1  # norm(input, p, dim, keepdim)
    dim = node.args[dim_index] if len(node.args) > dim_index else node.kwargs.get("dim")
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return list(range(len(shape)))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [d % len(shape) for d in dims]


@register_rule(methods=_REDUCTIONS, functions=[getattr(torch, n) for n in _REDUCTIONS], cost=NO_MACS, example=lambda g: [
    Example(lambda x: x.mean((2, 3)), (rand(g, 2, 6, 4, 4),)), Example(lambda x: torch.sum(x, -1), (rand(g, 2, 6, 5),))])
def reduction(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    shape = ctx.shape(x)
    second = ctx.node.args[1] if len(ctx.node.args) > 1 else None
    name = ctx.node.target if ctx.node.op == "call_method" else ctx.node.target.__name__
    if name in ("max", "min") and (ctx.shape(second) is not None or "other" in ctx.node.kwargs):
        return elementwise.propagate(ctx)  # torch.max(a, b)
    dims = _reduced_dims(ctx.node, shape)
    multi = multi_meta(ctx.node)
    out_shape = tuple(multi[0].shape) if multi is not None else ctx.out_shape
    keepdim = len(out_shape) == len(shape)
    exact = name in _SUMS and not (name == "norm" and ctx.arg(1, "p", 2) in (0, float("inf"), float("-inf")))
    out = fct.reduce_axes(ctx.factors(x), dims, keepdim, lambda ids, r: ctx.pin(ids, r),
                          f"{name} over a channel axis", union=ctx.union if exact else None)
    multi = multi_meta(ctx.node)
    return [out for _ in multi] if multi is not None else out


@reduction.rewriter
def _rewrite_mean(r) -> None:
    """``mean`` over channels becomes ``sum / dense count``: exactly what the masked model
    computes (zeroed channels count in the denominator)."""
    name = r.old.target if r.old.op == "call_method" else r.old.target.__name__
    if name != "mean":
        return
    src = r.old.args[0]
    dense, kept = r.dense_shape(src), r.kept_shape(src)
    dims = _reduced_dims(r.old, dense)
    if all(dense[d] == kept[d] for d in dims):
        return
    count = math.prod(dense[d] for d in dims)
    new = r.new
    new.target = "sum" if new.op == "call_method" else torch.sum
    with new.graph.inserting_after(new):
        div = new.graph.call_function(operator.truediv, (new, count))
    new.replace_all_uses_with(div, delete_user_cb=lambda user: user is not div)


@register_rule(functions=[F.normalize], cost=NO_MACS,
               example=lambda g: Example(lambda x: F.normalize(x, dim=1), (rand(g, 2, 6, 3, 3),)))
def normalize(ctx: RuleContext) -> Factors:
    """x / ||x||_p over a dim: zeroed channels change neither the norm (p > 0) nor stay nonzero."""
    p = ctx.arg(1, "p", 2.0)
    if p <= 0:
        return along_axis.propagate(ctx)
    return ctx.factors(ctx.arg(0, "input"))


@register_rule(methods=["softmax", "log_softmax", "cumsum", "cumprod", "cummax", "cummin", "sort",
                        "argsort", "topk", "logcumsumexp"],
               functions=[F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax,
                          torch.cumsum, torch.cumprod, torch.sort, torch.argsort, torch.topk,
                          F.glu, torch.logcumsumexp],
               modules=[nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d, nn.GLU, nn.LocalResponseNorm,
                        nn.CrossMapLRN2d], cost=NO_MACS,
               example=lambda g: Example(nn.Softmax(dim=-1), (rand(g, 2, 6, 5),)))
def along_axis(ctx: RuleContext) -> Any:
    """Ops that mix all positions along one axis: channels there are pinned."""
    x = ctx.arg(0, "input")
    nd = len(ctx.shape(x))
    name = type(ctx.module()).__name__ if ctx.node.op == "call_module" else (
        ctx.node.target if ctx.node.op == "call_method" else ctx.node.target.__name__)
    if ctx.node.op == "call_module":
        m = ctx.module()
        dim = getattr(m, "dim", 1 if nd > 1 else 0)
        if isinstance(m, (nn.Softmax2d, nn.LocalResponseNorm, nn.CrossMapLRN2d)):
            dim = nd - 3
    elif name == "topk":
        dim = ctx.arg(2, "dim", -1)
    elif name == "normalize":
        dim = ctx.arg(2, "dim", 1)
    elif name == "glu":
        dim = ctx.arg(1, "dim", -1)
    else:
        dim = ctx.arg(1, "dim", -1 if name in ("sort", "argsort") else None)
    if dim is None:
        return ctx.barrier(f"{name} without an explicit dim")
    dim %= nd
    out = fct.reduce_axes(ctx.factors(x), [dim], True, lambda ids, r: ctx.pin(ids, r),
                          f"{name} mixes channels along axis {dim}")
    multi = multi_meta(ctx.node)
    if multi is not None:
        return [out for _ in multi]
    meta = tensor_meta(ctx.node)
    if tuple(meta.shape) != ctx.shape(x):  # glu halves the axis, topk shortens it
        return tuple(f for f in out if all(meta.shape[a] == f.ids.shape[k] for k, a in enumerate(f.axes)))
    return out
