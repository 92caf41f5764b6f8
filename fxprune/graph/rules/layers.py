"""Layers with parameters: convolutions, linear, normalisation, embedding, attention.

Producers (conv / linear output rows, embedding columns) create channel ids; consumers tie
their input columns to the ids arriving on their input; norms tie their per-channel entries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .context import CostContext, RuleContext, tensor_label
from ..factors import Factor, Factors, factor_on
from .registry import NO_MACS, Example, WithParams, rand, register_rule

__all__ = ["batch_norm", "conv", "embedding", "functional_batch_norm", "functional_conv", "functional_linear",
           "group_norm", "linear", "multihead_attention", "prelu"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _split_input(ctx: RuleContext, x: Any, channel_axis: int, what: str) -> tuple[Factor | None, list[Factor]]:
    """The factor on ``channel_axis`` and the factors on axes before it (batch-like); factors on
    later (spatial) axes or spanning the channel axis and others are pinned."""
    chan, keep = None, []
    for f in ctx.factors(x):
        if f.axes == (channel_axis,):
            chan = f
        elif all(a < channel_axis for a in f.axes):
            keep.append(f)
        else:
            ctx.pin(f.ids, f"{what} mixes positions along axis {f.axes}")
    return chan, keep


@register_rule(modules=[*_CONV, *_CONV_T], example=lambda g: [
    Example(nn.Conv2d(6, 8, 3, padding=1), (rand(g, 2, 6, 7, 7),)),
    Example(nn.Conv2d(6, 12, 3, groups=6), (rand(g, 2, 6, 7, 7),)),
    Example(nn.Conv2d(6, 8, 3, groups=2), (rand(g, 2, 6, 7, 7),)),
    Example(nn.ConvTranspose2d(6, 4, 2, stride=2), (rand(g, 2, 6, 5, 5),)),
    Example(nn.Conv1d(6, 4, 3), (rand(g, 2, 6, 9),)),
    Example(nn.Conv3d(4, 6, 3, padding=1), (rand(g, 1, 4, 4, 5, 5),))])
def conv(ctx: RuleContext) -> Factors:
    m = ctx.module()
    x = ctx.arg(0, "input")
    shape = ctx.shape(x)
    spatial = m.weight.ndim - 2
    cax = len(shape) - spatial - 1
    chan, keep = _split_input(ctx, x, cax, type(m).__name__)
    transposed = isinstance(m, _CONV_T)
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    in_ids = chan.ids if chan is not None else None
    if g == 1:
        in_axis, out_axis = (0, 1) if transposed else (1, 0)
        if in_ids is not None:
            ctx.module_param("weight", in_axis, in_ids)
        out_ids = ctx.module_param("weight", out_axis, producer=True)
    elif g == cin and not transposed:
        # depthwise (channel multiplier cout // cin): output j follows input j // mult
        if in_ids is None:
            in_ids = ctx.fresh(cin, pinned=True)
        out_ids = np.repeat(in_ids, cout // cin)
        ctx.module_param("weight", 0, out_ids)
    else:
        # grouped: every group keeps the same relative positions, so the block structure survives
        a, b = cin // g, cout // g
        if in_ids is not None:
            blocks = in_ids.reshape(g, a)
            ctx.union(blocks, np.broadcast_to(blocks[:1], blocks.shape))
            if transposed:
                ctx.module_param("weight", 0, in_ids)
            else:
                ctx.module_param("weight", 1, blocks[0].copy())
        if transposed:
            out_ids = np.tile(ctx.module_param("weight", 1, producer=True), g)
        else:
            w0 = ctx.module_param("weight", 0, producer=True)
            rows = w0.reshape(g, b)
            ctx.union(rows, np.broadcast_to(rows[:1], rows.shape))
            out_ids = w0
    ctx.module_param("bias", 0, out_ids)
    return tuple(keep) + (Factor((cax,), out_ids),)


@conv.cost_formula
def _conv_macs(c: CostContext):
    m = c.module()
    if isinstance(m, _CONV_T):  # every input position scatters into out_channels/groups x kernel outputs
        base = math.prod(c.shape(c.arg(0, "input"))) * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    else:
        base = math.prod(c.out_shape) * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    return [(base, c.param_ids("weight"))]


@conv.module_updater
def _update_conv(new: nn.Module, old: nn.Module) -> None:
    w = new.weight
    if isinstance(new, _CONV_T):
        new.in_channels = w.shape[0]
        new.out_channels = w.shape[1] * new.groups
    elif old.groups == old.in_channels and old.groups > 1:
        mult = old.out_channels // old.in_channels
        new.out_channels = w.shape[0]
        new.in_channels = new.groups = w.shape[0] // mult
    else:
        new.out_channels = w.shape[0]
        new.in_channels = w.shape[1] * new.groups


@register_rule(modules=[nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear], example=lambda g: [
    Example(nn.Linear(6, 5), (rand(g, 3, 6),)), Example(nn.Linear(6, 5), (rand(g, 2, 4, 6),), channel_axis=2, out_axis=2)])
def linear(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    last = len(ctx.shape(x)) - 1
    chan, keep = _split_input(ctx, x, last, "Linear")
    if chan is not None:
        ctx.module_param("weight", 1, chan.ids)
    out_ids = ctx.module_param("weight", 0, producer=True)
    ctx.module_param("bias", 0, out_ids)
    return tuple(keep) + (Factor((last,), out_ids),)


@linear.cost_formula
def _linear_macs(c: CostContext):
    return [(math.prod(c.out_shape) * c.module().in_features, c.param_ids("weight"))]


@linear.module_updater
def _update_linear(new: nn.Module, old: nn.Module) -> None:
    new.out_features, new.in_features = new.weight.shape


@register_rule(functions=[F.linear], example=lambda g: Example(
    WithParams(F.linear, rand(g, 5, 6), rand(g, 5)), (rand(g, 2, 4, 6),), channel_axis=2, out_axis=2))
def functional_linear(ctx: RuleContext) -> Factors:
    """``F.linear(x, w, b)`` with ``w`` a parameter (or computed from one)."""
    x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias", None)
    last = len(ctx.shape(x)) - 1
    chan, keep = _split_input(ctx, x, last, "linear")
    wf = ctx.factors(w)
    w_in, w_out = factor_on(wf, 1), factor_on(wf, 0)
    if chan is not None:
        if w_in is not None and w_in.axes == (1,):
            ctx.union(chan.ids, w_in.ids)
        else:
            ctx.pin(chan.ids, "linear weight columns carry no channels")
    if w_out is None or w_out.axes != (0,):
        return tuple(keep)
    ctx.cg.mark_producer(f"{tensor_label(w)}@0", w_out.ids)
    if b is not None:
        bf = factor_on(ctx.factors(b), 0)
        if bf is not None:
            ctx.union(bf.ids, w_out.ids)
    return tuple(keep) + (Factor((last,), w_out.ids),)


@register_rule(functions=[F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d],
               example=lambda g: Example(WithParams(lambda x, w, b: F.conv2d(x, w, b, padding=1), rand(g, 5, 6, 3, 3),
                                                    rand(g, 5)), (rand(g, 2, 6, 6, 6),)))
def functional_conv(ctx: RuleContext) -> Any:
    """``F.conv2d(x, w, b, stride, padding, dilation, groups)`` with groups == 1."""
    x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias", None)
    groups = ctx.arg(6, "groups", 1)
    if groups != 1:
        return ctx.barrier("functional grouped convolution")
    spatial = len(ctx.shape(w)) - 2
    cax = len(ctx.shape(x)) - spatial - 1
    chan, keep = _split_input(ctx, x, cax, "conv")
    wf = ctx.factors(w)
    w_in, w_out = factor_on(wf, 1), factor_on(wf, 0)
    for f in wf:
        if any(a >= 2 for a in f.axes):
            ctx.pin(f.ids, "conv weight factor on a kernel axis")
    if chan is not None:
        if w_in is not None and w_in.axes == (1,):
            ctx.union(chan.ids, w_in.ids)
        else:
            ctx.pin(chan.ids, "conv weight input axis carries no channels")
    if w_out is None or w_out.axes != (0,):
        return tuple(keep)
    ctx.cg.mark_producer(f"{tensor_label(w)}@0", w_out.ids)
    if b is not None:
        bf = factor_on(ctx.factors(b), 0)
        if bf is not None:
            ctx.union(bf.ids, w_out.ids)
    return tuple(keep) + (Factor((cax,), w_out.ids),)


def _weight_macs(c: CostContext):
    """``F.linear`` / ``F.conv*``: every output element reads one weight row (in_channels x kernel)."""
    w = c.arg(1, "weight")
    return [(math.prod(c.out_shape) * math.prod(c.shape(w)[1:]), c.ids(w))]


functional_linear.cost = functional_conv.cost = _weight_macs


# ---- normalisation ------------------------------------------------------------------------------
_PER_CHANNEL_NORMS = [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
                      nn.InstanceNorm2d, nn.InstanceNorm3d]


@register_rule(modules=_PER_CHANNEL_NORMS, cost=NO_MACS, example=lambda g: [
    Example(nn.BatchNorm2d(6), (rand(g, 2, 6, 4, 4),)), Example(nn.InstanceNorm1d(6, affine=True), (rand(g, 2, 6, 8),))])
def batch_norm(ctx: RuleContext) -> Factors:
    """Per-channel normalisation: the channel factor (axis 1) passes through and ties the
    weight, bias and running statistics; factors on other axes would change the batch statistics
    in training and are pinned."""
    x = ctx.arg(0, "input")
    m = ctx.module()
    unbatched = hasattr(m, "_get_no_batch_dim") and len(ctx.shape(x)) == m._get_no_batch_dim()
    cax = 0 if unbatched or len(ctx.shape(x)) == 1 else 1
    chan = None
    for f in ctx.factors(x):
        if f.axes == (cax,):
            chan = f
        else:
            ctx.pin(f.ids, "normalisation statistics span this axis")
    if chan is None:
        return ()
    for p in ("weight", "bias", "running_mean", "running_var"):
        ctx.module_param(p, 0, chan.ids)
    return (chan,)


@batch_norm.module_updater
def _update_norm(new: nn.Module, old: nn.Module) -> None:
    t = new.weight if new.weight is not None else new.running_mean
    if t is not None:
        new.num_features = t.shape[0]


@register_rule(functions=[F.batch_norm, F.instance_norm], cost=NO_MACS, example=lambda g: Example(
    WithParams(lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b), rand(g, 6), rand(g, 6).abs() + 1, rand(g, 6),
               rand(g, 6), frozen=(0, 1)), (rand(g, 2, 6, 4, 4),)))
def functional_batch_norm(ctx: RuleContext) -> Factors:
    x = ctx.arg(0, "input")
    chan = None
    for f in ctx.factors(x):
        if f.axes == (1,):
            chan = f
        else:
            ctx.pin(f.ids, "normalisation statistics span this axis")
    if chan is None:
        return ()
    # F.batch_norm and F.instance_norm share positions 1..4
    for i, name in enumerate(("running_mean", "running_var", "weight", "bias"), start=1):
        p = ctx.arg(i, name, None)
        pf = factor_on(ctx.factors(p), 0) if p is not None else None
        if pf is not None:
            ctx.union(pf.ids, chan.ids)
        elif p is not None and ctx.shape(p) and ctx.shape(p)[0] > 1:
            ctx.pin(chan.ids, f"batch norm {name} carries no channels")
    return (chan,)


@register_rule(modules=[nn.GroupNorm], cost=NO_MACS,
               example=lambda g: Example(nn.GroupNorm(3, 6), (rand(g, 2, 6, 4, 4),)))
def group_norm(ctx: RuleContext) -> Factors:
    """Statistics are per group of C/G channels: removing whole groups is exact, so each group's
    channels form one class (G == C makes it per channel)."""
    m = ctx.module()
    x = ctx.arg(0, "input")
    chan = None
    for f in ctx.factors(x):
        if f.axes == (1,):
            chan = f
        else:
            ctx.pin(f.ids, "group norm statistics span this axis")
    if chan is None:
        return ()
    per = m.num_channels // m.num_groups
    if per > 1:
        blocks = chan.ids.reshape(m.num_groups, per)
        ctx.union(blocks, np.broadcast_to(blocks[:, :1], blocks.shape))
    ctx.module_param("weight", 0, chan.ids)
    ctx.module_param("bias", 0, chan.ids)
    return (chan,)


@group_norm.module_updater
def _update_group_norm(new: nn.Module, old: nn.Module) -> None:
    per = old.num_channels // old.num_groups
    if new.weight is not None:
        new.num_channels = new.weight.shape[0]
        new.num_groups = new.num_channels // per


@register_rule(modules=[nn.PReLU], cost=NO_MACS, example=lambda g: Example(nn.PReLU(6), (rand(g, 2, 6, 4, 4),)))
def prelu(ctx: RuleContext) -> Factors:
    m = ctx.module()
    factors = ctx.factors(ctx.arg(0, "input"))
    if m.num_parameters > 1:
        chan = factor_on(factors, 1)
        if chan is None or chan.axes != (1,):
            if chan is not None:
                ctx.pin(chan.ids, "PReLU slope over a multi-axis factor")
            return tuple(f for f in factors if f is not chan)
        ctx.module_param("weight", 0, chan.ids)
    return factors


@prelu.module_updater
def _update_prelu(new: nn.Module, old: nn.Module) -> None:
    new.num_parameters = new.weight.shape[0]


@register_rule(modules=[nn.Embedding], cost=NO_MACS, example=lambda g: Example(
    nn.Embedding(10, 6), (torch.randint(0, 10, (2, 5), generator=g),), channels=(), out_axis=2))
def embedding(ctx: RuleContext) -> Factors:
    idx = ctx.arg(0, "input")
    nd = len(ctx.shape(idx))
    out_ids = ctx.module_param("weight", 1, producer=True)
    return tuple(f for f in ctx.factors(idx)) + (Factor((nd,), out_ids),)


@embedding.module_updater
def _update_embedding(new: nn.Module, old: nn.Module) -> None:
    new.embedding_dim = new.weight.shape[1]


@register_rule(modules=[nn.MultiheadAttention], example=lambda g: Example(
    nn.MultiheadAttention(6, 2, batch_first=True), (rand(g, 2, 5, 6), rand(g, 2, 4, 6), rand(g, 2, 4, 6)),
    channels=(0, 1, 2), channel_axis=2, out_axis=2, pick=0))
def multihead_attention(ctx: RuleContext) -> Any:
    """``nn.MultiheadAttention`` kept whole: it checks its input width against ``embed_dim`` and
    splits heads internally, so the channels around it are pinned (the surrounding MLPs stay
    prunable). Self-attention calls without masks and with ``need_weights=False`` never get here:
    the tracer records them as functional ops (``capture/inline.py``)."""
    return ctx.barrier("nn.MultiheadAttention is pruned only as self-attention without masks and with "
                       "need_weights=False (call it as mha(x, x, x, need_weights=False))")


@multihead_attention.cost_formula
def _mha_macs(c: CostContext):
    """Input projections, the two attention products and the output projection (fixed: the
    rule pins the channels around the module)."""
    m = c.module()
    q, k, v = (c.shape(c.arg(i, n)) for i, n in enumerate(("query", "key", "value")))
    if m.batch_first:
        n, length, s = q[0], q[1], k[1]
    elif len(q) == 3:
        length, n, s = q[0], q[1], k[0]
    else:
        length, n, s = q[0], 1, k[0]
    e = m.embed_dim
    proj = n * length * q[-1] * e + n * s * k[-1] * e + n * s * v[-1] * e
    return [(proj + 2 * n * length * s * e + n * length * e * e, [])]
