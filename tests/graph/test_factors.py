from __future__ import annotations

import numpy as np
import pytest

from fxprune.graph import factors as fct
from fxprune.graph.factors import Factor


def never(ids, reason):
    raise AssertionError(reason)


@pytest.mark.parametrize("src,dst,blocks", [
    ((2, 16, 4, 4), (2, 256), [((0, 1), (0, 1)), ((1, 4), (1, 2))]),
    ((2, 8, 3), (2, 2, 4, 3), [((0, 1), (0, 1)), ((1, 2), (1, 3)), ((2, 3), (3, 4))]),
    ((1, 6), (6,), [((0, 1), (0, 0)), ((1, 2), (0, 1))]),
])
def test_reshape_blocks(src, dst, blocks):
    assert fct.reshape_blocks(src, dst) == blocks


def test_flatten_repeats_each_channel_over_its_block():
    f = Factor((1,), np.arange(3))
    (out,) = fct.reshape((f,), (2, 3, 2, 2), (2, 12), never, "")
    assert out.axes == (1,) and out.ids.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_channel_split_gives_a_two_axis_factor_and_back():
    f = Factor((1,), np.arange(6))
    (two,) = fct.reshape((f,), (1, 6, 5), (1, 2, 3, 5), never, "")
    assert two.axes == (1, 2) and two.ids.tolist() == [[0, 1, 2], [3, 4, 5]]
    (back,) = fct.reshape(fct.permute((two,), [0, 2, 1, 3]), (1, 3, 2, 5), (1, 6, 5), never, "")
    assert back.ids.tolist() == [0, 3, 1, 4, 2, 5]


def test_kept_sizes_of_a_rectangle():
    f = Factor((1, 2), np.array([[0, 1, 2], [3, 4, 5]]))
    id_kept = np.array([True, False, True, True, False, True])
    assert fct.kept_sizes((f,), (1, 2, 3, 7), id_kept) == (1, 2, 2, 7)
    assert fct.kept_indices(f, 2, id_kept).tolist() == [0, 2]
