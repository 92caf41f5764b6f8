"""Similarity of criteria: do they rank channels alike, and do they prune the same channels?

- per layer, Spearman's rho and Kendall's tau between the scores of every pair of criteria;
- Jaccard overlap |A & B| / |A | B| of the pruned sets at the given sparsity, under layer-wise
  pruning (per layer) and under global pruning (over the whole network);
- per-layer pruned counts under global pruning, for each criterion.

Global pruning ranks all channels together; scores are divided by their layer's mean first
(as ``Plan(scope="global")`` does) unless the criterion's scores are comparable across layers.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy import stats

from ..planner import global_removals

__all__ = ["global_pruned", "jaccard", "layerwise_pruned", "lowest", "pair_key", "similarity", "sorted_pair"]


def pair_key(a: str, b: str) -> str:
    return f"{a}~{b}"


def lowest(scores: np.ndarray, k: int) -> set[int]:
    """The ``k`` lowest-scoring channels (ties: lower index first)."""
    idx = np.arange(len(scores))
    return set(idx[np.lexsort((idx, scores))][:k].tolist())


def layerwise_pruned(layer_scores: list[np.ndarray], sparsity: float) -> list[set[int]]:
    return [lowest(s, math.floor(sparsity * len(s) + 1e-9)) for s in layer_scores]


def global_pruned(layer_scores: list[np.ndarray], sparsity: float, comparable: bool) -> list[set[int]]:
    """Pruned channel indices per layer when every channel is ranked together (the planner's
    global ranking; each layer keeps at least one channel)."""
    removed = global_removals(layer_scores, [np.zeros(len(s), dtype=bool) for s in layer_scores],
                              [1] * len(layer_scores), sparsity, comparable)
    return [lowest(s, r) for s, r in zip(layer_scores, removed)]


def jaccard(a: set, b: set) -> float | None:
    union = a | b
    return len(a & b) / len(union) if union else None


def _corr(fn, x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None  # constant scores: no ranking to correlate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fn(x, y).statistic
    return None if np.isnan(r) else float(r)


def similarity(scores: dict[str, list[np.ndarray]], sparsity: float, comparable: dict[str, bool]) -> dict:
    names = list(scores)
    pairs = list(itertools.combinations(names, 2))
    lw = {n: layerwise_pruned(scores[n], sparsity) for n in names}
    gl = {n: global_pruned(scores[n], sparsity, comparable[n]) for n in names}
    out: dict = {"spearman": {}, "kendall": {}, "jaccard_layerwise": {}, "jaccard_global": {},
                 "global_pruned_counts": {n: [len(s) for s in gl[n]] for n in names}}
    for a, b in pairs:
        k = pair_key(a, b)
        out["spearman"][k] = [_corr(stats.spearmanr, x, y) for x, y in zip(scores[a], scores[b])]
        out["kendall"][k] = [_corr(stats.kendalltau, x, y) for x, y in zip(scores[a], scores[b])]
        out["jaccard_layerwise"][k] = [jaccard(x, y) for x, y in zip(lw[a], lw[b])]
        ga = {(i, c) for i, s in enumerate(gl[a]) for c in s}
        gb = {(i, c) for i, s in enumerate(gl[b]) for c in s}
        out["jaccard_global"][k] = jaccard(ga, gb)
    out["matrix"] = {stat: _matrix(names, out[stat]) for stat in ("spearman", "kendall", "jaccard_layerwise")}
    out["matrix"]["jaccard_global"] = [[1.0 if a == b else out["jaccard_global"].get(pair_key(*sorted_pair(names, a, b)))
                                        for b in names] for a in names]
    out["names"] = names
    return out


def sorted_pair(names: list[str], a: str, b: str) -> tuple[str, str]:
    return (a, b) if names.index(a) < names.index(b) else (b, a)


def _matrix(names: list[str], per_layer: dict[str, list[float | None]]) -> list[list[float | None]]:
    """Mean over layers of a pairwise statistic, as a symmetric matrix (1 on the diagonal)."""
    m: list[list[float | None]] = []
    for a in names:
        row = []
        for b in names:
            if a == b:
                row.append(1.0)
                continue
            vals = [v for v in per_layer[pair_key(*sorted_pair(names, a, b))] if v is not None]
            row.append(float(np.mean(vals)) if vals else None)
        m.append(row)
    return m
