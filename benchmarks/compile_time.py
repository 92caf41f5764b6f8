"""Per-stage compile seconds (median of N runs) for torchvision models at 50% local l1.

    .venv/bin/python benchmarks/compile_time.py --models resnet50 densenet121 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import torchvision
from rich.console import Console
from rich.table import Table

import fxprune

warnings.filterwarnings("ignore", category=FutureWarning)


def measure(name: str, repeats: int, verify: bool) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    size = 299 if name == "inception_v3" else 224
    x = torch.randn(1, 3, size, size)
    fxprune.compile(model, fxprune.Plan(), example_inputs=(x,), verify=verify)  # warm-up (imports, allocator)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,), verify=verify)
        total = time.perf_counter() - t0
        runs.append({**fxprune.report(small).seconds, "total": total})
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "densenet121"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/compile_time.json")
    args = p.parse_args()
    console = Console()
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    table = Table(title=f"fxprune compile seconds (median of {args.repeats}, torch threads {torch.get_num_threads()})")
    cols = ["trace", "analyse", "score", "rewrite", "verify", "total", "total (no verify)"]
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name in args.models:
        with console.status(f"{name}"):
            with_v = measure(name, args.repeats, True)
            without = measure(name, args.repeats, False)
        results["models"][name] = {"verify": with_v, "no_verify": without}
        table.add_row(name, *[f"{with_v.get(c, 0):.3f}" for c in cols[:-1]], f"{without['total']:.3f}")
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
