"""Latency benchmarks: dense vs pruned over inference backends, in separate processes
(``compare``), plus the per-layer latency tables behind latency-budget plans."""

from .backends import BACKENDS, Backend, Prepared, backend
from .runner import SCHEMA, BenchConfig, compare
from ..timing import Stats, busy_warning, sample, stats

__all__ = ["BACKENDS", "SCHEMA", "Backend", "BenchConfig", "Prepared", "Stats", "backend", "busy_warning", "compare",
           "sample", "stats"]
