"""Dense vs pruned latency over backends, each measured in K separate worker processes.

``compare(dense, pruned, example_inputs, backends=[...])`` pickles both models to a temporary
directory and, for every backend and each of ``processes`` repeats, starts
``python -m fxprune.bench.worker`` with the thread count set explicitly and OpenMP / ONNX Runtime
spin-waiting off. A worker prepares both models on its backend, warms up, and then times them in
alternating blocks (so slow drift hits both alike), reporting per-iteration milliseconds. The
result per backend: the median, p10 and p90 of each process, the median of the per-process
medians, the realised speed-up ``dense / pruned`` and its ratio to the MACs speed-up.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BenchmarkError
from .backends import BACKENDS, get_backend
from ..timing import QUIET_ENV, busy_warning
from ..export.onnx import export_onnx
from ..report import report
from .worker import measure

log = logging.getLogger(__name__)

SCHEMA = "fxprune.bench/1"
ONNX_BACKENDS = ("ort", "ort-cuda", "ort-trt")


@dataclass
class BenchConfig:
    backends: Sequence[str] = ("eager", "ort")
    batch: int | None = None  # None: the example inputs' batch
    threads: int = 0  # 0: all cores (os.cpu_count())
    warmup: int = 10
    iters: int = 50
    processes: int = 3
    max_seconds: float = 20.0  # per model per process: stop sampling early after this long
    skip_unavailable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _with_batch(inputs: tuple[torch.Tensor, ...], batch: int | None) -> tuple[torch.Tensor, ...]:
    if batch is None:
        return inputs
    return tuple(x[:1].expand(batch, *x.shape[1:]).contiguous() for x in inputs)


def compare(dense: nn.Module, pruned: nn.Module, example_inputs: Any, cfg: BenchConfig | None = None, *,
            macs: tuple[float, float] | None = None, progress: Any = None) -> dict[str, Any]:
    """Time ``dense`` and ``pruned`` on every backend of ``cfg``; returns the JSON-ready result
    (schema ``fxprune.bench/1``). ``macs``: (dense, pruned) MACs for the theoretical speed-up
    (default: from ``fxprune.report(pruned)``). ``progress(step, total, text)`` is called per worker."""
    cfg = cfg or BenchConfig()
    inputs = _with_batch(tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,),
                         cfg.batch)
    threads = cfg.threads or os.cpu_count() or 1
    if macs is None:
        rep = report(pruned)  # MACs at the compile example's batch: only their ratio is used
        macs = (rep.macs_before, rep.macs_after)
    result: dict[str, Any] = {"schema": SCHEMA, "batch": int(inputs[0].shape[0]),
                              "input_shapes": [list(x.shape) for x in inputs], "threads": threads,
                              "processes": cfg.processes, "warmup": cfg.warmup, "iters": cfg.iters,
                              "torch": torch.__version__, "macs_dense": float(macs[0]), "macs_pruned": float(macs[1]),
                              "macs_ratio": float(macs[1] / macs[0]), "theoretical_speedup": float(macs[0] / macs[1]),
                              "backends": {}, "skipped": {}, "warnings": [], **cfg.extra}
    warn = busy_warning(threads)
    if warn:
        warnings.warn(warn, stacklevel=2)
        result["warnings"].append(warn)
    chosen = []
    for name in cfg.backends:
        if name not in BACKENDS:
            raise BenchmarkError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}")
        why = BACKENDS[name].available()
        if why:
            if not cfg.skip_unavailable:
                raise BenchmarkError(f"backend {name!r} is not available here: {why}")
            result["skipped"][name] = why
            warnings.warn(f"skipping backend {name}: {why}", stacklevel=2)
            continue
        chosen.append(name)
    with tempfile.TemporaryDirectory(prefix="fxprune-bench-") as tmp:
        tmp = Path(tmp)
        blob: dict[str, Any] = {"dense": dense, "pruned": pruned, "inputs": inputs, "onnx": {}}
        if any(n in ONNX_BACKENDS for n in chosen):  # export once here, not in every worker
            for which, m in (("dense", dense), ("pruned", pruned)):
                exp = export_onnx(m, inputs, tmp / f"{which}.onnx", parity=False)
                blob["onnx"][which] = exp.path
                result.setdefault("onnx_exporter", {})[which] = exp.exporter
        torch.save(blob, tmp / "models.pt")
        total, step = len(chosen) * max(cfg.processes, 1), 0
        for name in chosen:
            runs = []
            for k in range(max(cfg.processes, 1)):
                if progress:
                    progress(step, total, f"{name}: process {k + 1}/{cfg.processes}")
                runs.append(_worker(tmp, name, threads, cfg, k) if cfg.processes > 0 else
                            _measure(tmp / "models.pt", name, threads, cfg, tmp / f"w{k}"))
                step += 1
            result["backends"][name] = _summarise(runs, result["theoretical_speedup"])
            result["backends"][name]["macs_ratio"] = result["macs_ratio"]  # pruned / dense, also per backend
    if progress:
        progress(total, total, "done")
    return result


def _summarise(runs: list[dict[str, Any]], theoretical: float) -> dict[str, Any]:
    out: dict[str, Any] = {"info": runs[0]["info"]}
    for which in ("dense", "pruned"):
        meds = [r[which]["median"] for r in runs]
        out[which] = {"median_ms": statistics.median(meds), "process_medians_ms": meds,
                      "p10_ms": statistics.median(r[which]["p10"] for r in runs),
                      "p90_ms": statistics.median(r[which]["p90"] for r in runs),
                      "samples_per_process": [r[which]["n"] for r in runs]}
    speedup = out["dense"]["median_ms"] / out["pruned"]["median_ms"]
    out["speedup"] = speedup
    out["efficiency"] = speedup / theoretical  # realised / theoretical (MACs) speed-up
    return out


def _worker(tmp: Path, name: str, threads: int, cfg: BenchConfig, k: int) -> dict[str, Any]:
    out = tmp / f"{name}-{k}.json"
    env = {**os.environ, **QUIET_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "fxprune.bench.worker", str(tmp / "models.pt"), name, str(threads),
           str(cfg.warmup), str(cfg.iters), str(cfg.max_seconds), str(out), str(tmp / f"w-{name}-{k}")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise BenchmarkError(f"the {name} worker failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def _measure(models: Path, name: str, threads: int, cfg: BenchConfig, workdir: Path) -> dict[str, Any]:
    return measure(models, name, threads, cfg.warmup, cfg.iters, cfg.max_seconds, workdir)


def backend_names() -> list[str]:
    return sorted(BACKENDS)


__all__ = ["SCHEMA", "BenchConfig", "backend_names", "compare", "get_backend"]
