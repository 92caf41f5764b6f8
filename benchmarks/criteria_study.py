"""Criteria study: train CIFAR networks on scikit-learn's digits (32x32, CPU), analyse the
pruning criteria on the trained weights, prune each network to a MACs budget with every
criterion, fine-tune on a fixed budget, and report test accuracy (mean ± std over seeds).

    python benchmarks/criteria_study.py                      # ResNet-56 and VGG-16-BN, 3 seeds
    python benchmarks/criteria_study.py --models resnet20 --seeds 0 --epochs 2 --finetune-epochs 1

Writes ``benchmarks/results/criteria_study/{study.json, study.md}`` and, per model, the analysis
(``analysis.json`` + PNGs) of the seed-0 network.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fxprune  # noqa: E402
from fxprune.analysis import analyze_criteria  # noqa: E402
from fxprune.data import digits_loaders  # noqa: E402
from fxprune.models.cifar import MODELS  # noqa: E402
from fxprune.train import accuracy, fit  # noqa: E402

CRITERIA = ["l1", "l2", "fpgm", "bn_scale", "taylor", "random", "cpmc"]
RESULTS = ROOT / "benchmarks" / "results" / "criteria_study"


def mean_std(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{100 * xs[0]:.2f}"
    return f"{100 * statistics.mean(xs):.2f} ± {100 * statistics.stdev(xs):.2f}"


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, seed in itertools.product(args.models, args.seeds):
        torch.manual_seed(seed)
        train, val, test = digits_loaders(args.batch_size, seed=seed)
        calib = list(itertools.islice(iter(train), args.calib_batches))
        x = calib[0][0][:2]
        model = MODELS[name]()
        t0 = time.perf_counter()
        fit(model, train, epochs=args.epochs, lr=args.lr, progress=True, description=f"{name} seed {seed}")
        dense_acc = accuracy(model, test)
        print(f"{name} seed {seed}: dense test acc {dense_acc:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
        rows.append({"model": name, "seed": seed, "criterion": "dense", "macs_ratio": 1.0, "params_ratio": 1.0,
                     "acc_pruned": dense_acc, "acc_finetuned": dense_acc})
        if seed == args.seeds[0]:
            a = analyze_criteria(model, (x,), criteria=[c for c in CRITERIA if c not in ("random", "cpmc")],
                                 sparsity=0.5, calibration_data=calib)
            a.save(out / name)
            (out / name / "summary.json").write_text(json.dumps(a.summary(), indent=1))
        for crit in args.criteria:
            torch.manual_seed(seed)
            small = fxprune.compile(model, fxprune.Plan(flops=args.flops, criterion=crit, scope="global", seed=seed),
                                    (x,), calibration_data=calib)
            rep = fxprune.report(small)
            acc0 = accuracy(small, test)
            fit(small, train, epochs=args.finetune_epochs, lr=args.finetune_lr, progress=True,
                description=f"{name} seed {seed} {crit}")
            acc1 = accuracy(small, test)
            print(f"  {crit:9s} MACs {rep.macs_ratio:.3f} params {rep.params_ratio:.3f}  "
                  f"acc pruned {acc0:.4f} -> fine-tuned {acc1:.4f}", flush=True)
            rows.append({"model": name, "seed": seed, "criterion": crit, "macs_ratio": rep.macs_ratio,
                         "params_ratio": rep.params_ratio, "acc_pruned": acc0, "acc_finetuned": acc1})
    return {"args": vars(args), "rows": rows}


def table(result: dict) -> str:
    rows = result["rows"]
    a = result["args"]
    lines = [f"Command: `python benchmarks/criteria_study.py {' '.join(sys.argv[1:])}`".rstrip(),
             "",
             f"digits 32x32 (1078 train / 360 test), dense {a['epochs']} epochs; each criterion prunes to "
             f"{a['flops']:.0%} of the dense MACs (global ranking) and fine-tunes {a['finetune_epochs']} epochs; "
             f"test accuracy in %, mean ± std over seeds {a['seeds']}.", ""]
    for name in a["models"]:
        lines += [f"**{name}**", "", "| criterion | MACs kept | params kept | acc. after pruning | acc. after fine-tuning |",
                  "|---|---|---|---|---|"]
        for crit in ["dense", *a["criteria"]]:
            rs = [r for r in rows if r["model"] == name and r["criterion"] == crit]
            if not rs:
                continue
            lines.append(f"| {crit} | {statistics.mean(r['macs_ratio'] for r in rs):.3f} | "
                         f"{statistics.mean(r['params_ratio'] for r in rs):.3f} | "
                         f"{mean_std([r['acc_pruned'] for r in rs])} | {mean_std([r['acc_finetuned'] for r in rs])} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet56", "vgg16_bn"], choices=sorted(MODELS))
    p.add_argument("--criteria", nargs="+", default=CRITERIA)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument("--flops", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    result = run(args)
    out = Path(args.out)
    (out / "study.json").write_text(json.dumps(result, indent=1))
    (out / "study.md").write_text(table(result) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
