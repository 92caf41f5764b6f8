"""Per-stage compile seconds (median of N runs) for torchvision models at 50% local l1, and how
compile time scales with graph size.

    .venv/bin/python benchmarks/compile_time.py --models resnet50 densenet121 --repeats 5
    .venv/bin/python benchmarks/compile_time.py --scaling      # torchvision set + deep residual stacks

``--scaling`` compiles (verified, 50% local l1) a set of torchvision classifiers and synthetic
ResNet-style stacks of ``--blocks`` residual blocks (conv-bn-relu-conv-bn + add, 16 channels, 8x8
inputs: the compute is negligible, the graph is not), counts each graph's nodes, fits
log(seconds) = a + k log(nodes) over the stacks (``scipy.stats.linregress``: k is the scaling
exponent, linear is 1), and again over the three largest stacks alone (fixed costs flatten the
fit at the small end), and reports ms per node; writes ``compile_scaling.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from rich.console import Console
from rich.progress import Progress
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


class Block(torch.nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c)
        self.conv2, self.bn2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def deep_stack(blocks: int, c: int = 16) -> torch.nn.Module:
    """A stem, ``blocks`` residual blocks and a classifier: one residual group through all of them."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, c, 3, padding=1), *[Block(c) for _ in range(blocks)],
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, 10))


SCALING_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121", "convnext_tiny",
                  "regnet_y_800mf", "resnet152", "vit_b_16"]


def scaling(args: argparse.Namespace, console: Console) -> None:
    from scipy import stats

    from fxprune.plotting import subplots

    rows = []
    cases = [(f"torchvision:{n}", lambda n=n: (torchvision.models.get_model(n, weights=None).eval(),
                                               torch.randn(1, 3, 224, 224))) for n in args.models_scaling]
    cases += [(f"stack:{b}", lambda b=b: (deep_stack(b).eval(), torch.randn(1, 3, 8, 8))) for b in args.blocks]
    fxprune.compile(deep_stack(2).eval(), fxprune.Plan(), example_inputs=(torch.randn(1, 3, 8, 8),))  # warm-up
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("compiling", total=len(cases))
        for name, build in cases:
            bar.update(task, description=f"compiling {name}")
            torch.manual_seed(0)
            model, x = build()
            t0 = time.perf_counter()
            small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
            total = time.perf_counter() - t0
            nodes = len(small.graph.nodes)
            rows.append({"model": name, "nodes": nodes, "seconds": total,
                         "ms_per_node": 1e3 * total / nodes, **fxprune.report(small).seconds})
            bar.advance(task)
            del small, model
    stack = [r for r in rows if r["model"].startswith("stack")]
    fit = None
    if len(stack) >= 2:
        lr = stats.linregress(np.log([r["nodes"] for r in stack]), np.log([r["seconds"] for r in stack]))
        # the slope over the largest stacks alone: at the small end fixed costs flatten the fit
        big = stack[-3:]
        top = stats.linregress(np.log([r["nodes"] for r in big]), np.log([r["seconds"] for r in big]))
        fit = {"exponent": lr.slope, "stderr": lr.stderr, "r": lr.rvalue,
               "exponent_largest": top.slope, "largest": [r["model"] for r in big],
               "ms_per_node_largest": stack[-1]["ms_per_node"]}
    table = Table(title="fxprune compile seconds vs graph nodes (verified, 50% local l1)")
    for c in ("model", "nodes", "seconds", "ms / node"):
        table.add_column(c, justify="right" if c != "model" else "left")
    for r in rows:
        table.add_row(r["model"], str(r["nodes"]), f"{r['seconds']:.2f}", f"{r['ms_per_node']:.3f}")
    console.print(table)
    if fit:
        console.print(f"deep stacks: seconds ~ nodes^{fit['exponent']:.3f} (stderr {fit['stderr']:.3f}, "
                      f"r {fit['r']:.4f}); over the {len(fit['largest'])} largest: nodes^{fit['exponent_largest']:.3f}; "
                      f"{fit['ms_per_node_largest']:.3f} ms per node at the largest")
    out = Path(args.out).parent
    out.mkdir(parents=True, exist_ok=True)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows, "fit": fit}
    (out / "compile_scaling.json").write_text(json.dumps(result, indent=1))
    lines = ["| model | nodes | seconds | ms / node |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['nodes']} | {r['seconds']:.2f} | {r['ms_per_node']:.3f} |" for r in rows]
    if fit:
        lines.append(f"\nDeep stacks: seconds ~ nodes^{fit['exponent']:.3f} (stderr {fit['stderr']:.3f}); over the "
                     f"{len(fit['largest'])} largest ({', '.join(fit['largest'])}): nodes^{fit['exponent_largest']:.3f}; "
                     f"{fit['ms_per_node_largest']:.3f} ms per node at the largest.")
    (out / "compile_scaling.md").write_text("\n".join(lines) + "\n")
    fig, ax = subplots(figsize=(6, 4))
    for kind, marker in (("torchvision", "o"), ("stack", "s")):
        pts = [r for r in rows if r["model"].startswith(kind)]
        ax.loglog([r["nodes"] for r in pts], [r["seconds"] for r in pts], marker, label=kind)
    ax.set_xlabel("graph nodes")
    ax.set_ylabel("compile seconds (verified)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "compile_scaling.png", dpi=120)
    console.print(f"wrote {out / 'compile_scaling.json'}, .md, .png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "densenet121"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/compile_time.json")
    p.add_argument("--scaling", action="store_true", help="compile seconds vs graph nodes (see the module docstring)")
    p.add_argument("--blocks", nargs="+", type=int, default=[100, 300, 1000, 3000, 10000])
    p.add_argument("--models-scaling", nargs="+", default=SCALING_MODELS)
    args = p.parse_args()
    console = Console()
    if args.scaling:
        scaling(args, console)
        return
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
