from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fxprune.graph.unionfind import UnionFind


@given(st.integers(2, 60), st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)), max_size=80))
def test_matches_a_naive_partition(n, pairs):
    pairs = [(a % n, b % n) for a, b in pairs]
    uf = UnionFind()
    ids = uf.fresh(n)
    if pairs:
        a, b = map(np.array, zip(*pairs))
        uf.union(ids[a], ids[b])
    sets = [{i} for i in range(n)]
    for a, b in pairs:
        sa = next(s for s in sets if a in s)
        sb = next(s for s in sets if b in s)
        if sa is not sb:
            sa |= sb
            sets.remove(sb)
    roots = uf.roots()
    for s in sets:
        assert len({roots[i] for i in s}) == 1 and roots[min(s)] == min(s)
    assert len(set(roots.tolist())) == len(sets)


def test_pinning_follows_unions():
    uf = UnionFind()
    ids = uf.fresh(6)
    uf.pin(ids[[1]])
    uf.union(ids[[1, 3]], ids[[2, 4]])
    assert uf.pinned_roots().tolist() == [1]  # {1, 2} is pinned, {3, 4} is not
