"""Applicability of a criterion: can its scores tell a layer's channels apart?

Per layer and criterion:
- the coefficient of variation ``std / |mean|`` of the scores (near 0: every channel looks the
  same to the criterion, and pruning by it is close to arbitrary);
- the fraction of channels whose score lies within ``band * |t|`` of the pruning threshold ``t``
  (the score of the last channel pruned at the given sparsity, layer-wise): the channels whose
  fate a small perturbation of the weights would flip.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["applicability", "coefficient_of_variation", "near_threshold"]


def coefficient_of_variation(s: np.ndarray) -> float | None:
    m = float(np.mean(s))
    return float(np.std(s) / abs(m)) if m != 0 else None


def near_threshold(s: np.ndarray, sparsity: float, band: float) -> float | None:
    k = math.floor(sparsity * len(s) + 1e-9)
    if k == 0 or len(s) < 2:
        return None
    t = float(np.sort(s)[k - 1])
    width = band * abs(t) if t != 0 else band * float(np.ptp(s))
    return float(np.mean(np.abs(s - t) <= width))


def applicability(scores: dict[str, list[np.ndarray]], sparsity: float, band: float) -> dict:
    return {"band": band, "sparsity": sparsity,
            "criteria": {name: {"cv": [coefficient_of_variation(s) for s in layers],
                                "near_threshold": [near_threshold(s, sparsity, band) for s in layers]}
                         for name, layers in scores.items()}}
