"""One benchmark process: ``python -m fxprune.bench.worker MODELS BACKEND THREADS WARMUP ITERS MAX_S OUT WORKDIR``.

Loads the pickled (dense, pruned, inputs) written by ``runner.compare`` (a file the parent just
wrote — not user input), prepares both on the backend, warms both up, then samples them in
alternating blocks and writes per-model statistics as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from .backends import get_backend
from ..timing import sample, stats

__all__ = ["BLOCKS", "main", "measure"]

BLOCKS = 5


def measure(models: Path, name: str, threads: int, warmup: int, iters: int, max_seconds: float,
            workdir: Path) -> dict[str, Any]:
    torch.set_num_threads(threads)
    blob = torch.load(models, weights_only=False)  # written by our parent process
    b = get_backend(name)
    workdir.mkdir(parents=True, exist_ok=True)
    prepared = {which: b.prepare(blob[which], blob["inputs"], threads=threads, workdir=workdir, tag=which,
                                 onnx_path=blob.get("onnx", {}).get(which))
                for which in ("dense", "pruned")}
    for p in prepared.values():
        sample(p.run, warmup=warmup, iters=0, sync=p.sync)
    samples: dict[str, list[float]] = {"dense": [], "pruned": []}
    per_block = max(1, iters // BLOCKS)
    for _ in range(BLOCKS):
        for which, p in prepared.items():
            samples[which] += sample(p.run, warmup=1, iters=per_block, sync=p.sync,
                                     max_seconds=max_seconds / BLOCKS)
    out: dict[str, Any] = {"info": prepared["pruned"].info, "threads": torch.get_num_threads()}
    for which, ms in samples.items():
        out[which] = stats(ms).to_dict()
    return out


def main(argv: list[str]) -> int:
    models, name, threads, warmup, iters, max_s, out, workdir = argv
    res = measure(Path(models), name, int(threads), int(warmup), int(iters), float(max_s), Path(workdir))
    Path(out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
