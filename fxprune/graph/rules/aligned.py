"""Channel-aligned modules: any module whose tensor inputs and output share one channel axis
(axis 1) position by position, whatever it computes along the other axes.

Feature transforms of style transfer are the example: AdaIN, WCT and ArtNet's S² mix *spatial*
positions and read whole-channel statistics (means, covariances, patches), but channel ``c`` of
the content features, channel ``c`` of the style features and channel ``c`` of the output are the
same channel. Subclass ``ChannelAligned`` (its subclasses register themselves) and the compiler
traces the module as a leaf, unions axis 1 of every tensor input with the output, and prunes
through it. The module must be parameter-free and accept any channel count; its forward must give
zero output channels where every input is zero in that channel (what removing it means: the
masked-dense reference zeroes the class on every tensor it lives on) — the compiler's
verification checks that on the example inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import fx, nn

from ..channels import RuleContext
from ..factors import Factors
from .registry import REGISTRY, OpRule


def channel_aligned(ctx: RuleContext) -> Factors:
    tensors = [a for a in list(ctx.node.args) + list(ctx.node.kwargs.values()) if isinstance(a, fx.Node)]
    out_shape = ctx.out_shape
    if len(out_shape) < 2:
        for t in tensors:
            ctx.pin_factors(ctx.factors(t), "channel-aligned module without a channel axis in its output")
        return ()
    carried = []
    for t in tensors:
        s = ctx.shape(t)
        for f in ctx.factors(t):
            if f.axes == (1,) and s is not None and len(s) >= 2 and s[1] == out_shape[1]:
                carried.append(f)
            else:
                ctx.pin(f.ids, "channel-aligned module: channels only pass on axis 1 of equal width")
    if not carried:
        return ()
    for f in carried[1:]:
        ctx.union(carried[0].ids, f.ids)
    return (carried[0],)


_RULE = OpRule("channel_aligned", channel_aligned)


class ChannelAligned(nn.Module):
    """Base class of channel-aligned modules (see the module docstring); subclasses register
    themselves with the op registry.

    ``macs_terms(shapes)`` tells the cost counting what one forward costs: a list of ``(MACs at
    these input shapes, degree)`` where the term scales as (kept fraction of the channels) **
    degree (a matmul over channels x channels has degree 2). The default is no MACs."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(_RULE, modules=[cls])

    def macs_terms(self, shapes: Sequence[tuple[int, ...] | None]) -> list[tuple[float, int]]:
        return []


def builtin_aligned_classes() -> list[type]:
    """fxprune's own channel-aligned modules imported so far (stored as data in ``.fxp`` files)."""
    out, todo = [], list(ChannelAligned.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.split(".")[0] == "fxprune":
            out.append(cls)
    return out
