"""Magnitude criteria over every weight that disappears with a channel (reduction: sum)."""

from __future__ import annotations

import numpy as np

from ..graph.channels import Group
from . import ScoringContext, register_criterion


@register_criterion("l1")
def l1(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Sum of |w| over the channel's producer rows, consumer columns and norm entries."""
    return ctx.accumulate(group, "abs")


@register_criterion("l2")
def l2(group: Group, ctx: ScoringContext) -> np.ndarray:
    """L2 norm of the concatenation of all weights that disappear with the channel."""
    return np.sqrt(ctx.accumulate(group, "sq"))
