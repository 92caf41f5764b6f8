"""Timing primitives: per-iteration wall-clock (or CUDA-event) samples, their statistics, and the
process settings that make CPU timings trustworthy on a shared machine."""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["QUIET_ENV", "Stats", "busy_warning", "percentile", "sample", "stats"]

log = logging.getLogger(__name__)

# OpenMP / ORT threads that spin-wait for work burn the cores other processes need; on 2 busy
# cores spin-waiting made torch 16x slower here. Workers start with these set.
QUIET_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0", "MKL_DYNAMIC": "FALSE"}


@dataclass
class Stats:
    median: float
    p10: float
    p90: float
    mean: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        raise ValueError("no samples")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stats(ms: list[float]) -> Stats:
    return Stats(statistics.median(ms), percentile(ms, 0.1), percentile(ms, 0.9), statistics.fmean(ms), len(ms))


def sample(fn: Callable[[], object], *, warmup: int, iters: int, sync: Callable[[], None] | None = None,
           max_seconds: float | None = None) -> list[float]:
    """Milliseconds of each of ``iters`` calls after ``warmup`` calls (``sync`` after each call,
    e.g. ``torch.cuda.synchronize``); stops early after ``max_seconds`` with at least 5 samples."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    out: list[float] = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(1e3 * (time.perf_counter() - t0))
        if max_seconds is not None and len(out) >= 5 and time.perf_counter() - start > max_seconds:
            break
    return out


def busy_warning(threads: int) -> str | None:
    """A warning when the 1-minute load average says the cores are oversubscribed. The average
    includes this benchmark's own recent work (up to ``threads`` runnable threads), so only a
    load above ``max(cores, threads) + 0.5`` means something else is competing."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    if load > max(cores, threads) + 0.5:
        return (f"the machine is busy (1-minute load average {load:.1f} on {cores} cores, {threads} benchmark "
                f"threads): CPU timings will be noisy; ratios within one run are still comparable")
    return None
