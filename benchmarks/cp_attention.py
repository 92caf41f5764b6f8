"""Skeleton CP model: joint-importance recovery and pruning criteria through channel attention.

For each seed: generate the synthetic infant-movement set (signal planted in l_wrist and
r_ankle), train CPAttentionNet, record where the planted joints rank in the joint-attention
importance, then prune the trained model with several criteria at several sparsities and report
test accuracy before and after a short fine-tune (same epochs and learning rate for all).

    .venv/bin/python benchmarks/cp_attention.py --out benchmarks/results/cp_attention
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

import fxprune  # noqa: E402
from fxprune.apps.cp.data import synthetic_infant_movements  # noqa: E402
from fxprune.apps.cp.model import CPAttentionNet, evaluate_cp, joint_importance, train_cp  # noqa: E402


def fine_tune(model: torch.nn.Module, train, epochs: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        for xb, yb in train.batches(32, shuffle=True, seed=seed * 1000 + epoch):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=600)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--criteria", nargs="+", default=["attention", "l1", "taylor", "random"])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    p.add_argument("--ft-epochs", type=int, default=2)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--out", default="benchmarks/results/cp_attention")
    args = p.parse_args()
    console = Console()
    rows, ranks = [], []
    t0 = time.time()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("seeds", total=len(args.seeds) * (1 + len(args.criteria) * len(args.sparsities)))
        for seed in args.seeds:
            data = synthetic_infant_movements(args.samples, seed=seed)
            train, test = data.split(0.75, seed=seed)
            torch.manual_seed(seed)
            model = CPAttentionNet()
            train_cp(model, train, epochs=args.epochs, seed=seed)
            dense_acc = evaluate_cp(model, test)
            imp = joint_importance(model, test)
            order = list(np.argsort(-imp))
            ranks.append({"seed": seed, "dense_accuracy": dense_acc,
                          "planted_ranks": {data.joints[j]: order.index(j) + 1 for j in data.planted}})
            bar.advance(task)
            calib = [(xb, yb) for xb, yb in train.batches(64)][:4]
            for crit in args.criteria:
                for sp in args.sparsities:
                    small = fxprune.compile(model, fxprune.Plan(sparsity=sp, criterion=crit, seed=seed), test.x[:8],
                                            calibration_data=calib)
                    r = fxprune.report(small)
                    before = evaluate_cp(small, test)
                    fine_tune(small, train, args.ft_epochs, args.ft_lr, seed)
                    rows.append({"seed": seed, "criterion": crit, "sparsity": sp, "dense_accuracy": dense_acc,
                                 "accuracy_pruned": before, "accuracy_fine_tuned": evaluate_cp(small, test),
                                 "macs_ratio": r.macs_after / r.macs_before})
                    bar.advance(task)
    table = Table(title=f"CPAttentionNet on synthetic skeletons, test accuracy, mean over seeds {args.seeds}")
    for col in ("criterion", "sparsity", "MACs", "pruned", f"+{args.ft_epochs} ep fine-tune"):
        table.add_column(col, justify="right")
    summary = []
    for crit in args.criteria:
        for sp in args.sparsities:
            sel = [r for r in rows if r["criterion"] == crit and r["sparsity"] == sp]
            s = {"criterion": crit, "sparsity": sp, "macs_ratio": statistics.mean(r["macs_ratio"] for r in sel),
                 "accuracy_pruned": statistics.mean(r["accuracy_pruned"] for r in sel),
                 "accuracy_fine_tuned": statistics.mean(r["accuracy_fine_tuned"] for r in sel)}
            summary.append(s)
            table.add_row(crit, f"{sp:.1f}", f"{s['macs_ratio']:.2f}", f"{s['accuracy_pruned']:.1%}",
                          f"{s['accuracy_fine_tuned']:.1%}")
    console.print(table)
    console.print("planted-joint ranks:", [r["planted_ranks"] for r in ranks],
                  "dense accuracy:", [round(r["dense_accuracy"], 3) for r in ranks])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "criteria.json").write_text(json.dumps({"command": " ".join(["benchmarks/cp_attention.py", *sys.argv[1:]]),
                                                   "seconds": time.time() - t0, "joint_ranks": ranks,
                                                   "summary": summary, "runs": rows}, indent=1))
    md = ["| criterion | sparsity | MACs | accuracy pruned | + fine-tune |", "|---|---|---|---|---|"]
    md += [f"| {s['criterion']} | {s['sparsity']:.1f} | {s['macs_ratio']:.2f} | {s['accuracy_pruned']:.1%} | "
           f"{s['accuracy_fine_tuned']:.1%} |" for s in summary]
    (out / "criteria.md").write_text("\n".join(md) + "\n")
    console.print(f"wrote {out / 'criteria.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
