"""Vectorised union-find over integer channel ids.

Every channel of every tensor edge gets an integer id; rules union ids that must be pruned
together. Unions and finds work on whole numpy arrays so that a 2048-wide residual add costs a
handful of numpy calls, not 2048 Python calls.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UnionFind"]

_EMPTY = np.zeros(0, dtype=np.int64)


class UnionFind:
    """Disjoint sets over ids ``0..n-1``. The root of a set is its smallest id.

    ``pinned`` marks ids whose set must never be pruned; a set is pinned when any member is.
    """

    def __init__(self) -> None:
        self._parent = np.zeros(1024, dtype=np.int64)
        self._pinned = np.zeros(1024, dtype=bool)
        self.n = 0

    def fresh(self, count: int, *, pinned: bool = False) -> np.ndarray:
        """Allocate ``count`` new singleton ids."""
        start, stop = self.n, self.n + count
        if stop > len(self._parent):
            cap = max(stop, 2 * len(self._parent))
            parent = np.zeros(cap, dtype=np.int64)
            parent[: self.n] = self._parent[: self.n]
            pin = np.zeros(cap, dtype=bool)
            pin[: self.n] = self._pinned[: self.n]
            self._parent, self._pinned = parent, pin
        ids = np.arange(start, stop, dtype=np.int64)
        self._parent[start:stop] = ids
        self._pinned[start:stop] = pinned
        self.n = stop
        return ids

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Roots of ``ids`` (any shape), compressing the paths it walks."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return ids.copy()
        parent = self._parent
        roots = parent[ids]
        while True:
            nxt = parent[roots]
            if np.array_equal(nxt, roots):
                break
            roots = nxt
        parent[ids] = roots
        return roots

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Union ``a[i]`` with ``b[i]`` for every i (arrays broadcast)."""
        a, b = np.broadcast_arrays(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
        a, b = a.ravel(), b.ravel()
        if a.size == 0:
            return
        parent = self._parent
        while True:
            ra, rb = self.find(a), self.find(b)
            diff = ra != rb
            if not diff.any():
                return
            ra, rb = ra[diff], rb[diff]
            a, b = a[diff], b[diff]
            # hook the larger root under the smaller; duplicate writes lose some links,
            # which the next round picks up again.
            parent[np.maximum(ra, rb)] = np.minimum(ra, rb)

    def pin(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        self._pinned[ids] = True

    def pinned_roots(self) -> np.ndarray:
        """Roots of every set that contains a pinned id (sorted, unique)."""
        marked = np.nonzero(self._pinned[: self.n])[0]
        return np.unique(self.find(marked)) if marked.size else _EMPTY

    def roots(self) -> np.ndarray:
        """Root of every id, indexable by id."""
        return self.find(np.arange(self.n, dtype=np.int64))
