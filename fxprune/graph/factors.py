"""Channel factors: which axes of a tensor carry channel ids, and how shape ops move them.

A tensor's channel information is a tuple of :class:`Factor` s with disjoint axes. A factor holds
an integer id for every position along its axes (``ids.shape == tensor.shape[axes]``); ids may
repeat (``flatten`` repeats a channel's id over its H*W block). Axes without a factor carry no
prunable channels. A factor spanning several axes (a channel axis split by ``view`` into
``(groups, C/groups)``) must be pruned as a rectangle; ``ChannelGraph`` enforces that.

The functions here are pure: they return new factors and report ids that must be pinned through
the ``pin`` callback instead of touching any global state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

__all__ = ["FACTORS", "Factor", "NO_FACTORS", "concat", "factor_on", "iter_factors", "kept_indices", "kept_mask",
           "kept_sizes", "permute", "reduce_axes", "reshape", "reshape_blocks", "shift", "squeeze", "unsqueeze"]

Pin = Callable[[np.ndarray, str], None]


@dataclass(frozen=True, eq=False)
class Factor:
    axes: tuple[int, ...]
    ids: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.ndim != len(self.axes):
            raise AssertionError(f"factor ids of ndim {self.ids.ndim} for axes {self.axes}")

    def with_axes(self, axes: Sequence[int]) -> Factor:
        return Factor(tuple(axes), self.ids)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Factor(axes={self.axes}, shape={self.ids.shape})"


Factors = tuple[Factor, ...]
NO_FACTORS: Factors = ()


def factor_on(factors: Factors, axis: int) -> Factor | None:
    for f in factors:
        if axis in f.axes:
            return f
    return None


def shift(factors: Factors, mapping: Callable[[int], int]) -> Factors:
    return tuple(f.with_axes([mapping(a) for a in f.axes]) for f in factors)


def permute(factors: Factors, perm: Sequence[int]) -> Factors:
    """Factors of ``x.permute(perm)``: output axis j is input axis perm[j]."""
    inv = {a: j for j, a in enumerate(perm)}
    out = []
    for f in factors:
        new_axes = [inv[a] for a in f.axes]
        order = np.argsort(new_axes)
        out.append(Factor(tuple(new_axes[k] for k in order), np.transpose(f.ids, order)))
    return tuple(out)


def reduce_axes(factors: Factors, axes: Sequence[int], keepdim: bool, pin: Pin, reason: str,
                union: Callable[[np.ndarray, np.ndarray], None] | None = None) -> Factors:
    """Factors after reducing over ``axes``.

    Without ``union`` a factor on a reduced axis is pinned: its channels feed a statistic (max,
    variance, softmax) that removing one changes. With ``union`` the reduction is a sum, which
    zeroed channels do not change, so the factor is simply dropped (a factor spanning reduced and
    kept axes is first made constant along the kept ones)."""
    axes = sorted(set(axes))
    out = []
    for f in factors:
        hit = [k for k, a in enumerate(f.axes) if a in axes]
        if hit:
            if union is None:
                pin(f.ids, reason)
            else:
                for k in range(len(f.axes)):
                    if k not in hit:
                        union(f.ids, np.broadcast_to(f.ids.take([0], axis=k), f.ids.shape))
            continue
        if keepdim:
            out.append(f)
        else:
            out.append(f.with_axes([a - sum(r < a for r in axes) for a in f.axes]))
    return tuple(out)


def unsqueeze(factors: Factors, dim: int) -> Factors:
    return shift(factors, lambda a: a + 1 if a >= dim else a)


def squeeze(factors: Factors, dims: Sequence[int], pin: Pin, reason: str) -> Factors:
    """Remove size-1 ``dims``. A one-channel factor there is pinned (it cannot become empty)."""
    dims = sorted(set(dims))
    out = []
    for f in factors:
        hit = [k for k, a in enumerate(f.axes) if a in dims]
        if hit:
            if len(f.axes) == len(hit):
                pin(f.ids, reason)
                continue
            ids = f.ids.reshape([s for k, s in enumerate(f.ids.shape) if k not in hit])
            f = Factor(tuple(a for k, a in enumerate(f.axes) if k not in hit), ids)
        out.append(f.with_axes([a - sum(d < a for d in dims) for a in f.axes]))
    return tuple(out)


def reshape_blocks(src: Sequence[int], dst: Sequence[int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Split a reshape into minimal blocks ``((i0, i1), (j0, j1))``: source axes ``i0:i1`` hold
    exactly the elements of destination axes ``j0:j1``."""
    blocks: list[tuple[tuple[int, int], tuple[int, int]]] = []
    i = j = 0
    while i < len(src) or j < len(dst):
        i0, j0 = i, j
        if i < len(src) and src[i] == 1 and (j >= len(dst) or dst[j] != 1):
            blocks.append(((i, i + 1), (j, j)))
            i += 1
            continue
        if j < len(dst) and dst[j] == 1 and (i >= len(src) or src[i] != 1):
            blocks.append(((i, i), (j, j + 1)))
            j += 1
            continue
        if i >= len(src) or j >= len(dst):
            raise ValueError(f"cannot reshape {tuple(src)} into {tuple(dst)}")
        pa, pb = src[i], dst[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                if i >= len(src):
                    raise ValueError(f"cannot reshape {tuple(src)} into {tuple(dst)}")
                pa *= src[i]
                i += 1
            else:
                if j >= len(dst):
                    raise ValueError(f"cannot reshape {tuple(src)} into {tuple(dst)}")
                pb *= dst[j]
                j += 1
        blocks.append(((i0, i), (j0, j)))
    return blocks


def _varying_axes(arr: np.ndarray) -> list[int]:
    out = []
    for k in range(arr.ndim):
        if arr.shape[k] > 1 and not np.array_equal(np.broadcast_to(arr.take([0], axis=k), arr.shape), arr):
            out.append(k)
    return out


def reshape(factors: Factors, src: Sequence[int], dst: Sequence[int], pin: Pin, reason: str) -> Factors:
    """Factors of ``x.reshape(dst)`` for ``x`` of shape ``src``.

    Each factor is laid out over the smallest run of reshape blocks that contains its axes,
    reshaped like the data, and reduced to the destination axes along which its ids vary.
    Factors whose runs overlap cannot be told apart afterwards and are pinned."""
    blocks = reshape_blocks(src, dst)
    spans = []
    for f in factors:
        hit = [b for b in blocks if any(b[0][0] <= a < b[0][1] for a in f.axes)]
        spans.append((hit[0][0][0], hit[-1][0][1], hit[0][1][0], hit[-1][1][1]))
    out = []
    for k, (f, (i0, i1, j0, j1)) in enumerate(zip(factors, spans)):
        if any(max(i0, s[0]) < min(i1, s[1]) for m, s in enumerate(spans) if m != k):
            pin(f.ids, reason + " (two channel factors merged into one axis)")
            continue
        view_shape = [src[a] if a in f.axes else 1 for a in range(i0, i1)]
        full = np.broadcast_to(f.ids.reshape(view_shape), tuple(src[i0:i1]))
        arr = full.reshape(tuple(dst[j0:j1]))
        vary = _varying_axes(arr)
        if not vary:
            pin(f.ids, reason + " (a single channel folded into other axes)")
            continue
        index = tuple(slice(None) if k2 in vary else 0 for k2 in range(arr.ndim))
        out.append(Factor(tuple(j0 + k2 for k2 in vary), np.ascontiguousarray(arr[index])))
    return tuple(out)


def concat(parts: Sequence[tuple[Factors, Sequence[int]]], dim: int, fresh_pinned: Callable[[int], np.ndarray],
           ) -> tuple[Factor | None, list[Factors]]:
    """Channel factor along ``dim`` of ``cat(parts, dim)``: the concatenation of every part's ids
    along ``dim`` (fresh pinned ids for a part that has none). Returns that factor and, per part,
    its factors on the other axes (which the caller unions like an elementwise op)."""
    along: list[np.ndarray] = []
    any_factor = False
    others: list[Factors] = []
    for factors, shape in parts:
        f = factor_on(factors, dim)
        others.append(tuple(g for g in factors if g is not f))
        if f is not None and len(f.axes) == 1:
            along.append(f.ids)
            any_factor = True
        else:
            along.append(fresh_pinned(shape[dim]))
    if not any_factor:
        return None, others
    return Factor((dim,), np.concatenate(along)), others


def kept_mask(factor: Factor, id_kept: np.ndarray) -> np.ndarray:
    """Boolean array over the factor's positions: True where the channel is kept."""
    return id_kept[factor.ids]


def kept_sizes(factors: Factors, shape: Sequence[int], id_kept: np.ndarray) -> tuple[int, ...]:
    """The shape a tensor of dense ``shape`` with these factors has after pruning."""
    sizes = list(shape)
    for f in factors:
        mask = kept_mask(f, id_kept)
        for k, a in enumerate(f.axes):
            other = tuple(x for x in range(mask.ndim) if x != k)
            sizes[a] = int(mask.any(axis=other).sum()) if other else int(mask.sum())
    return tuple(sizes)


def kept_indices(factor: Factor, axis: int, id_kept: np.ndarray) -> np.ndarray:
    """Indices kept along one axis of a factor (rectangular by construction)."""
    mask = kept_mask(factor, id_kept)
    k = factor.axes.index(axis)
    other = tuple(x for x in range(mask.ndim) if x != k)
    return np.nonzero(mask.any(axis=other) if other else mask)[0]


FACTORS = "fxprune.factors"
"""The ``node.meta`` key holding a node's factor tree."""


def iter_factors(tree: Any) -> Iterable[Factor]:
    """Every Factor in a node's factor tree: a tuple of Factors for a tensor, a list of trees
    for a tuple/list output, a dict of trees for a dict output, None for anything else."""
    if isinstance(tree, tuple):
        yield from tree
    elif isinstance(tree, list):
        for t in tree:
            yield from iter_factors(t)
    elif isinstance(tree, dict):
        for t in tree.values():
            yield from iter_factors(t)
