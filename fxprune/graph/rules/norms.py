"""LayerNorm and RMSNorm over the channel axis, pruned exactly.

With the removed channels zero (the masked model), a norm over all D channels computes, on the
K kept ones:

- LayerNorm: mean = sum_kept(x) / D and var = (sum_kept((x - mean)^2) + (D - K) mean^2) / D
  (each zero channel contributes (0 - mean)^2). A LayerNorm over K divides by K instead, so the
  pruned layer becomes ``DenseLayerNorm``: the same statistics with the dense count kept.
- RMSNorm: rms_D = sqrt(sum_kept(x^2) / D + eps) = sqrt(K / D) * rms_K with eps' = eps * D / K,
  so a standard RMSNorm over K with weight * sqrt(D / K) and eps * D / K is exact; no new op.

Only a norm over the last axis alone passes channels; over several trailing axes (``RMSNorm([4,
4])``) the channel factor is pinned as before, and an RMSNorm without a weight is pinned (there is
no weight to carry the rescale).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...capture.meta import tensor_meta
from ..factors import Factors, factor_on
from .context import RuleContext
from .registry import NO_MACS, Example, WithParams, rand, register_rule

__all__ = ["DenseLayerNorm", "dense_layer_norm", "layer_norm"]


def dense_layer_norm(x: torch.Tensor, normalized_shape: Any, weight: torch.Tensor | None, bias: torch.Tensor | None,
                     eps: float, dense_count: int) -> torch.Tensor:
    """LayerNorm over the last axis of the kept channels with the statistics of ``dense_count``
    channels, the others being zero (see the module docstring)."""
    kept = x.shape[-1]
    mean = x.sum(-1, keepdim=True) / dense_count
    centred = x - mean
    var = (centred.square().sum(-1, keepdim=True) + (dense_count - kept) * mean.square()) / dense_count
    y = centred * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


torch.fx.wrap("dense_layer_norm")


class DenseLayerNorm(nn.LayerNorm):
    """A pruned ``nn.LayerNorm``: normalises its ``normalized_shape[-1]`` kept channels with the
    statistics of ``dense_count`` channels (the removed ones counted as zeros), so the pruned
    model equals the masked dense one. Subclass of ``nn.LayerNorm``; state-dict keys unchanged."""

    dense_count: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dense_layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps, self.dense_count)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dense_count={self.dense_count}"


def exact_module_classes() -> list[type]:
    """fxprune's own modules the exact rewrites put into a pruned model (stored as data in ``.fxp``)."""
    return [DenseLayerNorm]


def _normalized(ctx: RuleContext) -> int:
    if ctx.node.op == "call_module":
        return len(ctx.module().normalized_shape)
    ns = ctx.arg(1, "normalized_shape")
    return len(ns) if isinstance(ns, (tuple, list)) else 1


@register_rule(modules=[nn.LayerNorm, nn.RMSNorm], functions=[F.layer_norm, F.rms_norm, dense_layer_norm],
               cost=NO_MACS,
               example=lambda g: [Example(nn.LayerNorm(6), (rand(g, 2, 4, 6),), channel_axis=2, out_axis=2),
                                  Example(nn.RMSNorm(6), (rand(g, 2, 4, 6),), channel_axis=2, out_axis=2),
                                  Example(nn.RMSNorm([4, 4]), (rand(g, 2, 6, 4, 4),)),
                                  Example(WithParams(lambda x, w, b: F.layer_norm(x, (6,), w, b), rand(g, 6),
                                                     rand(g, 6)), (rand(g, 2, 4, 6),), channel_axis=2, out_axis=2)])
def layer_norm(ctx: RuleContext) -> Factors:
    """A norm over the last axis passes its channels (rewritten with the dense count); over
    several trailing axes, or an RMSNorm without weight, the channels there are pinned."""
    x = ctx.arg(0, "input")
    nd = len(ctx.shape(x))
    k = _normalized(ctx)
    module = ctx.module() if ctx.node.op == "call_module" else None
    rms = isinstance(module, nn.RMSNorm) if module is not None else ctx.node.target is F.rms_norm
    if module is not None:
        weight = module.weight
    else:
        weight = ctx.arg(2, "weight", None)
    out = []
    for f in ctx.factors(x):
        if not any(a >= nd - k for a in f.axes):
            out.append(f)
        elif k == 1 and f.axes == (nd - 1,) and not (rms and weight is None):
            out.append(f)
            _tie(ctx, module, f)
        else:
            ctx.pin(f.ids, "layer norm statistics over several axes" if k > 1 else
                    "RMSNorm without a weight cannot carry the exact rescale")
    return tuple(out)


def _tie(ctx: RuleContext, module: nn.Module | None, f: Any) -> None:
    if module is not None:
        for p in ("weight", "bias"):
            if getattr(module, p, None) is not None:
                ctx.module_param(p, 0, f.ids)
        return
    names = ("weight", "bias") if ctx.node.target is not F.rms_norm else ("weight",)
    for i, name in enumerate(names, start=2):
        p = ctx.arg(i, name, None)
        if p is None:
            continue
        pf = factor_on(ctx.factors(p), 0)
        if pf is not None and pf.axes == (0,):
            ctx.union(pf.ids, f.ids)
        else:
            ctx.pin(f.ids, f"layer norm {name} carries no channels")


@layer_norm.rewriter
def _rewrite_layer_norm(r) -> None:
    src = r.old.args[0] if r.old.args else r.old.kwargs["input"]
    dense, kept = r.dense_shape(src), r.kept_shape(src)
    if dense is None or kept is None or dense[-1] == kept[-1]:
        return
    d, k = dense[-1], kept[-1]
    dtype = tensor_meta(src).dtype
    if r.old.op == "call_module":
        m = r.module()
        if tuple(m.normalized_shape) == (k,):
            return  # a shared module, rewritten at its first call
        m.normalized_shape = (k,)
        if isinstance(m, nn.RMSNorm):
            eps = m.eps if m.eps is not None else torch.finfo(dtype).eps
            m.eps = eps * d / k
            with torch.no_grad():
                m.weight.mul_(math.sqrt(d / k))
        elif isinstance(m, DenseLayerNorm):
            pass  # already counts its dense channels (pruned twice): keep the first dense count
        else:
            m.__class__ = DenseLayerNorm
            m.dense_count = d
        return
    new = r.new
    args = list(new.args) + [None] * 6
    kw = dict(new.kwargs)
    x = args[0] if new.args else kw.get("input")
    if r.old.target is F.rms_norm:
        weight, eps = (args[2] if len(new.args) > 2 else kw.get("weight")), \
            (args[3] if len(new.args) > 3 else kw.get("eps"))
        eps = eps if eps is not None else torch.finfo(dtype).eps
        with new.graph.inserting_before(new):
            scaled = new.graph.call_function(torch.mul, (weight, math.sqrt(d / k)))
        new.args, new.kwargs = (x, (k,), scaled, eps * d / k), {}
        return
    if r.old.target is dense_layer_norm:
        new.args = (x, (k,), *new.args[2:])
        return
    weight = args[2] if len(new.args) > 2 else kw.get("weight")
    bias = args[3] if len(new.args) > 3 else kw.get("bias")
    eps = args[4] if len(new.args) > 4 else kw.get("eps", 1e-5)
    new.target = dense_layer_norm
    new.meta["is_wrapped"] = True  # the generated code re-wraps it, so fx traces the pruned model as one call
    new.args, new.kwargs = (x, (k,), weight, bias, 1e-5 if eps is None else eps, d), {}
