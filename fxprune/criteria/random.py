"""Uniform random scores: the baseline every criterion must beat."""

from __future__ import annotations

import zlib

import numpy as np

from ..graph.channel_graph import Group
from .base import ScoringContext, register_criterion

__all__ = ["random"]


@register_criterion("random")
def random(group: Group, ctx: ScoringContext) -> np.ndarray:
    """Deterministic in (plan seed, group key) so a plan always resolves the same way."""
    rng = np.random.default_rng([ctx.seed, zlib.crc32(group.key.encode())])
    return rng.random(group.size)
