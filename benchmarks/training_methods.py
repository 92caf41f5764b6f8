"""Training-time pruning methods side by side on scikit-learn's digits (32x32, CPU).

Every method starts from the same pre-trained dense network (per seed) and gets the same epoch
budget, all at 50% of the dense MACs: dense (keeps training); one-shot l1 + fine-tune; one-shot
cpmc + fine-tune; SFP; HFP; GHFP (l2 ranking, cubic rate ramp over 2/3 of the epochs); DAIS
(search half the epochs, binarise, fine-tune the rest). Reports test accuracy (mean ± std over
seeds), achieved MACs / params, wall time, and plots test accuracy per epoch.

    python benchmarks/training_methods.py                      # ResNet-56 and VGG-16-BN, 3 seeds
    python benchmarks/training_methods.py --models resnet20 --seeds 0 --pretrain-epochs 2 --epochs 2

Writes ``benchmarks/results/training_methods/{results.json, results.md, accuracy_<model>.png}``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fxprune.data import digits_loaders  # noqa: E402
from fxprune.models.cifar import MODELS  # noqa: E402
from fxprune.train import accuracy, fit  # noqa: E402
from fxprune.methods.run import MethodConfig, run_method  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "training_methods"
VARIANTS = {  # label -> (method, criterion)
    "dense": ("dense", None),
    "one-shot l1 + FT": ("oneshot", "l1"),
    "one-shot cpmc + FT": ("oneshot", "cpmc"),
    "SFP": ("sfp", None),
    "HFP": ("hfp", None),
    "GHFP": ("ghfp", None),
    "DAIS": ("dais", None),
}


def mean_std(xs: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if len(xs) == 1:
        return f"{scale * xs[0]:.{digits}f}"
    return f"{scale * statistics.mean(xs):.{digits}f} ± {scale * statistics.stdev(xs):.{digits}f}"


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.perf_counter()
    for name, seed in itertools.product(args.models, args.seeds):
        torch.manual_seed(seed)
        train, val, test = digits_loaders(args.batch_size, seed=seed)
        val = DataLoader(val.dataset, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
        x = next(iter(test))[0][:2]
        dense = MODELS[name]()
        t0 = time.perf_counter()
        pre = fit(dense, train, epochs=args.pretrain_epochs, lr=args.lr, val_loader=test, progress=True,
                  description=f"{name} seed {seed} pretrain")
        pre_acc = accuracy(dense, test)
        print(f"{name} seed {seed}: pre-trained test acc {pre_acc:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
        for label in args.methods:
            method, criterion = VARIANTS[label]
            torch.manual_seed(seed)
            cfg = MethodConfig(method, flops=args.flops, epochs=args.epochs, criterion=criterion, lr=args.method_lr,
                               finetune_lr=args.finetune_lr, progress=True)
            _, rec = run_method(cfg, copy.deepcopy(dense), (x,), train, val, test)
            rec.pop("masks", None)
            rows.append({"model": name, "seed": seed, "variant": label, "pretrain_acc": pre_acc,
                         "pretrain_history": pre, **rec})
            print(f"  {label:20s} acc {rec['test_accuracy']:.4f}  MACs {rec['macs_ratio']:.3f}  "
                  f"params {rec['params_ratio']:.3f}  {rec['wall_seconds']:.0f}s"
                  + (f"  (dais binary {rec['binarized']['binary_macs_ratio']:.4f}, projected "
                     f"{rec['binarized']['projected']})" if "binarized" in rec else ""), flush=True)
            (out / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=float))
    result = {"args": vars(args), "rows": rows, "total_seconds": time.perf_counter() - started}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    write_markdown(result, out)
    plot(result, out)
    return result


def write_markdown(result: dict, out: Path) -> None:
    args, rows = result["args"], result["rows"]
    lines = [f"Command: `{args['command']}`", "",
             f"digits 32x32 (1078 train / 359 val / 360 test); dense pre-training {args['pretrain_epochs']} epochs, then "
             f"every method {args['epochs']} epochs (DAIS: {round(args['epochs'] / 2)} search + the rest fine-tuning) at "
             f"{args['flops']:.0%} of the dense MACs; test accuracy in %, mean ± std over seeds; "
             f"wall time per method run on a 2-core CPU ({args['threads']} threads).", ""]
    for name in args["models"]:
        sel = [r for r in rows if r["model"] == name]
        pre = sorted({r["seed"]: r["pretrain_acc"] for r in sel}.values())
        seeds = sorted({r["seed"] for r in sel})
        lines += [f"**{name}** (seeds {seeds}; pre-trained: {mean_std(pre)})", "",
                  "| method | test accuracy | MACs kept | params kept | wall s |", "|---|---|---|---|---|"]
        for label in args["methods"]:
            rs = [r for r in sel if r["variant"] == label]
            if not rs:
                continue
            lines.append(f"| {label} | {mean_std([r['test_accuracy'] for r in rs])} | "
                         f"{mean_std([r['macs_ratio'] for r in rs], 1, 3)} | {mean_std([r['params_ratio'] for r in rs], 1, 3)} | "
                         f"{statistics.mean(r['wall_seconds'] for r in rs):.0f} |")
        dais = [r["binarized"] for r in sel if "binarized" in r]
        if dais:
            kept = ", ".join(f"{d['binary_macs_ratio']:.4f}" for d in dais)
            lines += ["", f"DAIS binarised indicators kept {kept} of the MACs before any projection; "
                          f"projected: {sum(d['projected'] for d in dais)}/{len(dais)}."]
        lines.append("")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args, rows = result["args"], result["rows"]
    for name in args["models"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label in args["methods"]:
            rs = [r for r in rows if r["model"] == name and r["variant"] == label]
            if not rs:
                continue
            curves = [[h["val_acc"] for h in r["history"]] for r in rs]
            n = min(len(c) for c in curves)
            mean = [100 * statistics.mean(c[i] for c in curves) for i in range(n)]
            ax.plot(range(1, n + 1), mean, marker="o", ms=3, label=label)
        ax.set_xlabel("epoch (after pre-training)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{name} on digits, {args['flops']:.0%} MACs, mean over seeds {args['seeds']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"accuracy_{name}.png", dpi=110)
        plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet56", "vgg16_bn"], choices=sorted(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--epochs", type=int, default=10, help="epochs every method gets after pre-training")
    p.add_argument("--flops", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.1, help="pre-training learning rate")
    p.add_argument("--method-lr", type=float, default=0.05, help="learning rate of the methods that train weights")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="learning rate when fine-tuning a pruned model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--from-json", nargs="+", metavar="RESULTS_JSON",
                   help="no training: merge these results.json files (runs of different models / seeds) "
                        "and write results.md and the plots to --out")
    args = p.parse_args()
    args.command = "python benchmarks/training_methods.py " + " ".join(sys.argv[1:])
    if args.from_json:
        merge(args)
    else:
        run(args)


def merge(args: argparse.Namespace) -> None:
    parts = [json.loads(Path(f).read_text()) for f in args.from_json]
    rows = [r for p in parts for r in p["rows"]]
    first = dict(parts[0]["args"])
    first["models"] = list(dict.fromkeys(r["model"] for r in rows))
    first["seeds"] = sorted({r["seed"] for r in rows})
    first["command"] = " ; ".join(p["args"]["command"] for p in parts)
    result = {"args": first, "rows": rows, "merged_from": args.from_json}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    write_markdown(result, out)
    plot(result, out)


if __name__ == "__main__":
    main()
