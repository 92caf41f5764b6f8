"""``fxprune`` command line. Library code logs; this module prints."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from . import compile as fx_compile
from . import report as get_report
from . import save
from .errors import FxPruneError
from .models import get_model
from .plan import Plan


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 1,3,224,224, got {text!r}") from None


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def cmd_prune(args: argparse.Namespace, console: Console) -> int:
    model, shape = get_model(args.model, args.weights)
    shape = args.input_shape or shape
    torch.manual_seed(args.seed)
    x = torch.randn(*shape)
    budget = {"flops": args.flops} if args.flops is not None else {"params": args.params} if args.params is not None \
        else {"sparsity": args.sparsity if args.sparsity is not None else 0.5}
    plan = Plan(criterion=args.criterion, scope=args.scope, round_to=args.round_to, min_channels=args.min_channels,
                ignore=args.ignore or (), seed=args.seed, **budget)
    data = _calibration(args.data, shape, args.batches, args.seed)
    what = ", ".join(f"{k}={v:g}" for k, v in budget.items())
    with console.status(f"compiling {args.model} at {what} ({args.criterion}, {plan.scope})"):
        t0 = time.perf_counter()
        small = fx_compile(model, plan, example_inputs=(x,), verify=not args.no_verify, calibration_data=data)
        total = time.perf_counter() - t0
    rep = get_report(small)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save(small, out / "model.fxp")
    plan.to_json(out / "plan.json")
    small.meta["fxprune.resolution"].to_json(out / "resolution.json")
    (out / "report.json").write_text(rep.to_json())

    table = Table(title=f"fxprune: {args.model}")
    table.add_column("", style="bold")
    table.add_column("dense", justify="right")
    table.add_column("pruned", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("params", _fmt(rep.params_before), _fmt(rep.params_after), f"{rep.params_ratio:.3f}")
    table.add_row("MACs", _fmt(rep.macs_before), _fmt(rep.macs_after), f"{rep.macs_ratio:.3f}")
    console.print(table)
    t2 = Table(title="compile")
    for k in rep.seconds:
        t2.add_column(k, justify="right")
    t2.add_column("total", justify="right")
    t2.add_row(*[f"{v:.3f}s" for v in rep.seconds.values()], f"{total:.3f}s")
    console.print(t2)
    pruned = sum(1 for g in rep.groups if g.after < g.before)
    console.print(f"groups: {len(rep.groups)} ({rep.prunable_groups} prunable, {pruned} pruned); "
                  f"barriers: {len(rep.barriers)}; auto-leaves: {len(rep.auto_leaves)}")
    if rep.max_abs_error is not None:
        console.print(f"verification: max |pruned - masked dense| = {rep.max_abs_error:.3g} "
                      f"(relative to max |output| {rep.relative_error:.2g})")
    else:
        console.print("verification: skipped (--no-verify)")
    for b in rep.barriers[:10]:
        console.print(f"  barrier `{b.node}` ({b.op}): {b.reason} [{b.channels} channels]")
    for note in rep.notes:
        console.print(f"note: {note}")
    console.print(f"wrote {out}/model.fxp, plan.json, resolution.json, report.json")
    return 0


def _calibration(kind: str, shape: tuple[int, ...], batches: int, seed: int):
    """Calibration batches for data-driven criteria: digits resized to the model's input, or none."""
    if kind == "none":
        return None
    import torch.nn.functional as F

    from .data import digits_loaders

    train, _, _ = digits_loaders(32, seed=seed, channels=shape[1])
    out = []
    for x, y in train:
        if x.shape[-2:] != tuple(shape[-2:]):
            x = F.interpolate(x, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)
        out.append((x, y))
        if len(out) >= batches:
            break
    return out


def cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    from .analysis import analyze_criteria

    model, shape = get_model(args.model, args.weights)
    shape = args.input_shape or shape
    torch.manual_seed(args.seed)
    x = torch.randn(*shape)
    data = _calibration(args.data, shape, args.batches, args.seed)
    with console.status(f"analysing criteria {', '.join(args.criteria)} on {args.model}"):
        a = analyze_criteria(model, (x,), criteria=args.criteria, sparsity=args.sparsity, calibration_data=data,
                             band=args.band, alpha=args.alpha, seed=args.seed)
        files = a.save(args.out)
    s = a.summary()
    t = Table(title=f"similarity of criteria on {args.model} ({len(a.layers)} layers, {a.sparsity:.0%} pruned)")
    for col in ("pair", "Spearman", "Kendall", "Jaccard layer-wise", "Jaccard global"):
        t.add_column(col, justify="right" if col != "pair" else "left")
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for pair, v in s["pairs"].items():
        t.add_row(pair, f(v["spearman"]), f(v["kendall"]), f(v["jaccard_layerwise"]), f(v["jaccard_global"]))
    console.print(t)
    t2 = Table(title="applicability (mean over layers)")
    for col in ("criterion", "CV of scores", f"within ±{args.band:.0%} of threshold"):
        t2.add_column(col, justify="right" if col != "criterion" else "left")
    for c, v in s["applicability"].items():
        t2.add_row(c, f(v["cv"]), f(v["near_threshold"]))
    console.print(t2)
    rate = s["cwda_pass_rate"]
    console.print(f"CWDA: {len(a.cwda['layers'])} conv layers pass normality at alpha={args.alpha}: "
                  f"Shapiro-Wilk {f(rate['shapiro'])}, D'Agostino K2 {f(rate['dagostino'])}, KS {f(rate['ks'])}")
    for name, why in a.skipped.items():
        console.print(f"skipped {name}: {why} (use --data digits)")
    console.print(f"wrote {', '.join(p.name for p in files)} to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxprune", description="Graph-compiler channel pruning for PyTorch.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the compiler does")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prune", help="prune a model and write it, its plan and resolution")
    pr.add_argument("--model", required=True, help="model spec, e.g. torchvision:resnet50")
    pr.add_argument("--weights", help="local state-dict file to load into the model")
    budget = pr.add_mutually_exclusive_group()
    budget.add_argument("--sparsity", type=float, help="fraction of channels to remove (default 0.5)")
    budget.add_argument("--flops", type=float, help="fraction of the dense MACs to keep")
    budget.add_argument("--params", type=float, help="fraction of the dense parameters to keep")
    pr.add_argument("--criterion", default="l1")
    pr.add_argument("--data", choices=["none", "digits"], default="none",
                    help="calibration data for data-driven criteria (taylor, zero_channel, attention)")
    pr.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    pr.add_argument("--scope", choices=["local", "global"], help="default: the criterion's (global for cpmc, else local)")
    pr.add_argument("--round-to", type=int, default=1)
    pr.add_argument("--min-channels", type=int, default=1)
    pr.add_argument("--ignore", nargs="*", help="module names to leave alone")
    pr.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--no-verify", action="store_true", help="skip the pruned == masked-dense check")
    pr.add_argument("--out", required=True, help="output directory")
    pr.set_defaults(func=cmd_prune)

    an = sub.add_parser("analyze", help="similarity / applicability of pruning criteria and the conv-weight "
                                        "distribution assumption; writes analysis.json and PNGs")
    an.add_argument("--model", required=True, help="model spec, e.g. torchvision:resnet18 or cifar:resnet56")
    an.add_argument("--weights", help="local state-dict file to load into the model")
    an.add_argument("--criteria", nargs="+", default=["l1", "l2", "fpgm", "bn_scale", "taylor"])
    an.add_argument("--sparsity", type=float, default=0.5, help="pruning ratio for pruned sets and thresholds")
    an.add_argument("--data", choices=["none", "digits"], default="none",
                    help="calibration data for data-driven criteria (taylor): scikit-learn digits, resized")
    an.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    an.add_argument("--band", type=float, default=0.05, help="near-threshold band, relative to the threshold")
    an.add_argument("--alpha", type=float, default=0.05, help="significance level of the normality tests")
    an.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    an.add_argument("--seed", type=int, default=0)
    an.add_argument("--out", required=True, help="output directory")
    an.set_defaults(func=cmd_analyze)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.func(args, console)
    except FxPruneError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
