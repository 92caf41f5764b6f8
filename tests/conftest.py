"""Shared helpers: randomised models (so verification means something) and mutation checks."""

from __future__ import annotations

import os
import tempfile
import warnings

import pytest
import torch
from torch import nn

import fxprune
from fxprune.models import randomize_for_verification
from fxprune.timing import QUIET_ENV

warnings.filterwarnings("ignore", category=FutureWarning)

# Under pytest-xdist (`make test` runs 2 workers), the workers share the cores: each gets its share
# of torch threads, and OpenMP threads do not spin-wait (on 2 busy cores that made torch 16x
# slower; the setting reaches the processes tests start too).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))
for _k, _v in QUIET_ENV.items():
    os.environ.setdefault(_k, _v)
# latency tables and backend steps measured by tests go to a directory of this run, never to the
# user's ~/.cache (tests that check the cache point FXPRUNE_CACHE_DIR elsewhere themselves)
os.environ["FXPRUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="fxprune-test-cache-")


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and no constant parameters (see fxprune.models)."""
    return randomize_for_verification(model, seed)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before)
    for k, v in after.items():
        a, b = v.detach().contiguous(), before[k].contiguous()
        assert a.dtype == b.dtype and a.shape == b.shape, f"{k} changed dtype/shape"
        bits_equal = torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
        assert bits_equal, f"{k} was modified"


def compile_checked(model: nn.Module, *inputs, plan=None, expect_pruned: bool = True, **kwargs):
    """Compile at 50% (verifying), check the caller's model is untouched, shapes agree and that
    something was (or was not) pruned; returns (small, report)."""
    model = model.eval()
    before = snapshot(model)
    small = fxprune.compile(model, plan or fxprune.Plan(sparsity=0.5), example_inputs=inputs, **kwargs)
    assert_unchanged(model, before)
    rep = fxprune.report(small)
    assert rep.max_abs_error is not None
    with torch.no_grad():
        dense_out, small_out = model(*inputs), small.eval()(*inputs)
    for a, b in zip(torch.utils._pytree.tree_leaves(dense_out), torch.utils._pytree.tree_leaves(small_out)):
        assert a.shape == b.shape
    if expect_pruned:
        assert rep.params_after < rep.params_before, "expected some channels to be pruned"
    else:
        assert rep.params_after == rep.params_before
    return small, rep


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
