"""``fxprune`` command line. Library code logs; this module prints."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from . import compile as fx_compile
from . import report as get_report
from . import save
from .report import RESOLUTION_KEY
from .errors import FxPruneError, PlanError
from .models import get_model
from .plan import Plan


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 1,3,224,224, got {text!r}") from None


def out_dir(path: str) -> Path:
    """``--out``: an existing directory or one we can create; checked before any work starts."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FxPruneError(f"--out {path} is an existing file; give a directory (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FxPruneError(f"cannot create --out {path}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise FxPruneError(f"--out {path} is not writable")
    return out


def _json_option(text: str, option: str) -> Any:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FxPruneError(f"{option} is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise FxPruneError(f"{option} must be a JSON object such as '{{\"soft_decay\": 0.5}}', got {text!r}")
    return value


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def cmd_prune(args: argparse.Namespace, console: Console) -> int:
    out = out_dir(args.out)
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
    save(small, out / "model.fxp")
    plan.to_json(out / "plan.json")
    small.meta[RESOLUTION_KEY].to_json(out / "resolution.json")
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
    if kind == "skeleton":
        from .data.skeleton import synthetic_infant_movements

        if len(shape) != 4 or shape[1] != 3 or shape[3] != 18:
            raise PlanError(f"--data skeleton gives N x 3 x T x 18 pose sequences; the model's input shape is "
                            f"{tuple(shape)} (use --data digits for image models)")
        return synthetic_infant_movements(32 * batches, frames=shape[2], seed=seed).batches(32)[:batches]
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

    out_dir(args.out)
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


def _distributed_setup() -> tuple[int, int]:
    """(rank, world size); initialises the default process group under torchrun (gloo on CPU)."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if world > 1 else 0), world


def _digest(*tensors: torch.Tensor) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _train_loaders(args: argparse.Namespace, world: int, rank: int):
    from torch.utils.data import DataLoader, DistributedSampler

    from .data import digits_loaders

    train, val, test = digits_loaders(args.batch_size, seed=args.seed)
    if world > 1:  # each rank a shard of the training and held-out data; the same test set
        train = DataLoader(train.dataset, args.batch_size,
                           sampler=DistributedSampler(train.dataset, world, rank, shuffle=True, seed=args.seed))
        val = DataLoader(val.dataset, args.batch_size,
                         sampler=DistributedSampler(val.dataset, world, rank, shuffle=True, seed=args.seed))
    else:
        val = DataLoader(val.dataset, args.batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(args.seed))
    return train, val, test


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    import json

    from .train import fit
    from .train.run import MethodConfig, run_method

    options = _json_option(args.options, "--options") if args.options else {}
    out = out_dir(args.out)
    rank, world = _distributed_setup()
    torch.manual_seed(args.seed)
    model, shape = get_model(args.model, args.weights)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, val, test = _train_loaders(args, world, rank)
    x = next(iter(test))[0][:2]
    if tuple(x.shape[1:]) != tuple(shape[1:]):
        raise FxPruneError(f"--data {args.data} gives inputs of shape {tuple(x.shape[1:])} but {args.model} expects "
                           f"{tuple(shape[1:])}: use a model for 3x32x32 inputs (cifar:resnet20, cifar:resnet56, ...)")
    if args.pretrain_epochs:
        with console.status(f"pre-training {args.model} for {args.pretrain_epochs} epochs") if rank == 0 else contextlib.nullcontext():
            fit(model, train, epochs=args.pretrain_epochs, lr=args.lr, description="pretrain")
    cfg = MethodConfig(args.method, flops=args.flops, epochs=args.epochs, criterion=args.criterion, scope=args.scope,
                       lr=args.lr, search_fraction=args.search_fraction, progress=rank == 0, options=options)
    small, record = run_method(cfg, model, (x,), train, val, test)
    masks = record.pop("masks", {})
    record.update(model=args.model, data=args.data, seed=args.seed, pretrain_epochs=args.pretrain_epochs,
                  world_size=world)
    if world > 1:
        import torch.distributed as dist

        mine = {"rank": rank, "model": _digest(*small.state_dict().values()),
                "masks": _digest(*masks.values()) if masks else None}
        ranks: list[Any] = [None] * world
        dist.all_gather_object(ranks, mine)
        record["ranks"] = ranks
        record["identical"] = all(r["model"] == ranks[0]["model"] and r["masks"] == ranks[0]["masks"] for r in ranks)
    if rank == 0:
        save(small, out / "model.fxp")
        (out / "result.json").write_text(json.dumps(record, indent=1, default=float))
        table = Table(title=f"fxprune train: {args.method} on {args.model} ({args.data}, seed {args.seed})")
        for col in ("test accuracy", "MACs kept", "params kept", "epochs", "seconds"):
            table.add_column(col, justify="right")
        table.add_row(f"{100 * record['test_accuracy']:.2f}%", f"{record['macs_ratio']:.3f}",
                      f"{record['params_ratio']:.3f}", str(args.epochs), f"{record['wall_seconds']:.1f}")
        console.print(table)
        if "binarized" in record:
            b = record["binarized"]
            console.print(f"dais: binary indicators keep {b['binary_macs_ratio']:.4f} of the MACs"
                          + (" -> projected onto the budget" if b["projected"] else ""))
        if world > 1:
            console.print(f"{world} ranks; masks and finalized models identical: {record['identical']}")
        console.print(f"wrote {out}/result.json and model.fxp")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        if not record["identical"]:
            raise FxPruneError(f"ranks disagree: {record['ranks']}")
    return 0


def _pruned_from_args(args: argparse.Namespace, console: Console):
    """(dense model, pruned model, example input) from --model/--weights and --plan or the
    budget options (--sparsity / --flops / --params / --latency)."""
    model, shape = get_model(args.model, args.weights)
    shape = args.input_shape or shape
    torch.manual_seed(args.seed)
    x = torch.randn(*shape)
    if args.plan:
        plan = Plan.from_json(args.plan)
    else:
        budget = {"flops": args.flops} if args.flops is not None else {"params": args.params} \
            if args.params is not None else {"sparsity": args.sparsity if args.sparsity is not None else 0.5}
        extra = {}
        if getattr(args, "latency", None) is not None:
            budget = {"latency": args.latency}
            extra = {"backend": args.latency_backend}
        plan = Plan(criterion=args.criterion, scope=args.scope, round_to=args.round_to, seed=args.seed, **budget,
                    **extra)
    with console.status(f"compiling {args.model}"):
        small = fx_compile(model, plan, example_inputs=(x,))
    return model, small, x, plan


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    import json

    from .export import build_engine, export_onnx

    model, small, x, plan = _pruned_from_args(args, console)
    xb = x[:1].expand(args.batch, *x.shape[1:]).contiguous()
    with console.status(f"exporting {args.onnx}"):
        exp = export_onnx(small, (xb,), args.onnx, opset=args.opset, exporter=args.exporter, fp16=args.fp16 and not
                          args.trt, dynamic_batch=not args.static_batch)
    rep = get_report(small)
    info = {"model": args.model, "plan": plan.to_dict(), "macs_ratio": rep.macs_ratio, "params_ratio": rep.params_ratio,
            "onnx": exp.to_dict()}
    t = Table(title=f"fxprune export: {args.model}")
    for col in ("file", "exporter", "opset", "dtype", "batch axis", "ORT parity (max abs err)"):
        t.add_column(col)
    par = exp.parity or {}
    t.add_row(exp.path, exp.exporter + (" (dynamo failed)" if exp.fallback_reason else ""), str(exp.opset), exp.dtype,
              "dynamic" if exp.dynamic_batch else "static",
              f"{par.get('max_abs_error', float('nan')):.2e} ({', '.join(par.get('providers', []))})")
    console.print(t)
    if exp.fallback_reason:
        console.print(f"dynamo exporter failed: {exp.fallback_reason}")
    if args.trt:
        from .export.tensorrt import require_cuda, require_tensorrt, tensorrt_version

        require_tensorrt()
        require_cuda()
        src = exp
        if args.fp16 and int(str(tensorrt_version()).split(".")[0]) >= 11:  # strongly typed: FP16 comes from the ONNX
            src = export_onnx(small, (xb,), Path(args.onnx).with_suffix(".fp16.onnx"), opset=args.opset,
                              exporter=args.exporter, fp16=True, dynamic_batch=not args.static_batch)
        build = build_engine(src.path, args.trt, fp16=args.fp16, input_shapes={src.input_names[0]: tuple(xb.shape)},
                             max_batch=args.max_batch, workspace_gib=args.workspace_gib, timing_cache=args.timing_cache)
        info["tensorrt"] = build.to_dict()
        console.print(f"TensorRT {build.tensorrt_version}: wrote {build.engine_path} ({build.precision}"
                      f"{', via ' + build.fp16_via if build.fp16_via else ''}) in {build.seconds:.1f}s")
    Path(args.onnx).with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
    console.print(f"wrote {args.onnx} and {Path(args.onnx).with_suffix('.json')}")
    return 0


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    import json

    from rich.progress import Progress

    from .bench import BenchConfig, compare
    from .bench.plots import plot_latency

    model, small, x, plan = _pruned_from_args(args, console)
    cfg = BenchConfig(backends=args.backend, batch=args.batch, threads=args.threads, warmup=args.warmup,
                      iters=args.iters, processes=args.processes,
                      extra={"model": args.model, "plan": plan.to_dict()})
    with Progress(transient=True) as bar:
        task = bar.add_task("benchmarking", total=len(args.backend) * args.processes)
        res = compare(model, small, (x,), cfg,
                      progress=lambda i, n, text: bar.update(task, completed=i, total=n, description=text))
    t = Table(title=f"fxprune bench: {args.model}, batch {res['batch']}, {res['threads']} threads, "
                    f"median of {args.processes} processes")
    for col in ("backend", "dense ms (p10-p90)", "pruned ms (p10-p90)", "speed-up", "MACs speed-up",
                "realised / MACs", "used"):
        t.add_column(col, justify="left" if col in ("backend", "used") else "right")
    for name, b in res["backends"].items():
        d, p = b["dense"], b["pruned"]
        used = b["info"].get("providers") or b["info"].get("compiler") or b["info"].get("device", "")
        t.add_row(name, f"{d['median_ms']:.2f} ({d['p10_ms']:.2f}-{d['p90_ms']:.2f})",
                  f"{p['median_ms']:.2f} ({p['p10_ms']:.2f}-{p['p90_ms']:.2f})", f"{b['speedup']:.2f}x",
                  f"{res['theoretical_speedup']:.2f}x", f"{b['efficiency']:.2f}",
                  ", ".join(used) if isinstance(used, list) else str(used))
    console.print(t)
    for name, why in res["skipped"].items():
        console.print(f"skipped {name}: {why}")
    for w in res["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))
        console.print(f"wrote {args.json}")
    if args.plot:
        plot_latency([res], args.plot)
        console.print(f"wrote {args.plot}")
    return 0


def _add_model_options(p: argparse.ArgumentParser, *, plan_file: bool = True) -> None:
    """The model, plan and example-input options shared by prune / export / bench."""
    p.add_argument("--model", required=True, help="model spec, e.g. torchvision:resnet50")
    p.add_argument("--weights", help="local state-dict file to load into the model")
    if plan_file:
        p.add_argument("--plan", help="a plan JSON file (instead of the budget options)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--sparsity", type=float, help="fraction of channels to remove (default 0.5)")
    budget.add_argument("--flops", type=float, help="fraction of the dense MACs to keep")
    budget.add_argument("--params", type=float, help="fraction of the dense parameters to keep")
    p.add_argument("--criterion", default="l1")
    p.add_argument("--scope", choices=["local", "global"], help="default: the criterion's (global for cpmc, else local)")
    p.add_argument("--round-to", type=int, default=1, help="kept widths become multiples of this (8/16 for ORT CPU)")
    p.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    p.add_argument("--seed", type=int, default=0)


def _version() -> str:
    from . import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxprune", description="Graph-compiler channel pruning for PyTorch.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the compiler does; tracebacks on errors")
    p.add_argument("--version", action="version", version=f"fxprune {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prune", help="prune a model and write it, its plan and resolution")
    _add_model_options(pr, plan_file=False)
    pr.add_argument("--data", choices=["none", "digits", "skeleton"], default="none",
                    help="calibration data for data-driven criteria (taylor, zero_channel, attention)")
    pr.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    pr.add_argument("--min-channels", type=int, default=1)
    pr.add_argument("--ignore", nargs="*", help="module names to leave alone")
    pr.add_argument("--no-verify", action="store_true", help="skip the pruned == masked-dense check")
    pr.add_argument("--out", required=True, help="output directory")
    pr.set_defaults(func=cmd_prune)

    an = sub.add_parser("analyze", help="similarity / applicability of pruning criteria and the conv-weight "
                                        "distribution assumption; writes analysis.json and PNGs")
    an.add_argument("--model", required=True, help="model spec, e.g. torchvision:resnet18 or cifar:resnet56")
    an.add_argument("--weights", help="local state-dict file to load into the model")
    an.add_argument("--criteria", nargs="+", default=["l1", "l2", "fpgm", "bn_scale", "taylor"])
    an.add_argument("--sparsity", type=float, default=0.5, help="pruning ratio for pruned sets and thresholds")
    an.add_argument("--data", choices=["none", "digits", "skeleton"], default="none",
                    help="calibration data for data-driven criteria (taylor): scikit-learn digits, resized")
    an.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    an.add_argument("--band", type=float, default=0.05, help="near-threshold band, relative to the threshold")
    an.add_argument("--alpha", type=float, default=0.05, help="significance level of the normality tests")
    an.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    an.add_argument("--seed", type=int, default=0)
    an.add_argument("--out", required=True, help="output directory")
    an.set_defaults(func=cmd_analyze)

    ex = sub.add_parser("export", help="prune and export to ONNX (and a TensorRT engine on a GPU machine)")
    _add_model_options(ex)
    ex.add_argument("--onnx", required=True, help="output .onnx file (a .json export report is written beside it)")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    ex.add_argument("--batch", type=int, default=1, help="example batch (the batch axis stays dynamic)")
    ex.add_argument("--static-batch", action="store_true", help="fix the batch axis")
    ex.add_argument("--fp16", action="store_true", help="FP16 ONNX (and FP16 engine with --trt)")
    ex.add_argument("--trt", help="also build a TensorRT engine file (needs TensorRT and a GPU)")
    ex.add_argument("--max-batch", type=int, help="TensorRT profile: largest batch (default: --batch)")
    ex.add_argument("--workspace-gib", type=float, default=4.0)
    ex.add_argument("--timing-cache", help="TensorRT timing cache file (read and updated)")
    ex.set_defaults(func=cmd_export)

    be = sub.add_parser("bench", help="latency of the dense and the pruned model, same run, over backends")
    _add_model_options(be)
    be.add_argument("--latency", type=float, help="latency budget: keep this fraction of the dense latency "
                                                  "(per-layer latency table measured on --latency-backend)")
    be.add_argument("--latency-backend", default="ort", help="backend of the latency table (default ort)")
    be.add_argument("--backend", nargs="+", default=["eager", "ort"],
                    help="eager, compile, ort; on CUDA: cuda-fp16, cuda-graphs, cuda-compile, ort-cuda, ort-trt, trt")
    be.add_argument("--batch", type=int, default=1)
    be.add_argument("--threads", type=int, default=0, help="threads per worker (0: all cores)")
    be.add_argument("--processes", type=int, default=3, help="separate worker processes per backend")
    be.add_argument("--iters", type=int, default=50)
    be.add_argument("--warmup", type=int, default=10)
    be.add_argument("--json", help="write the result JSON here")
    be.add_argument("--plot", help="write a latency-vs-MACs PNG here")
    be.set_defaults(func=cmd_bench)

    tr = sub.add_parser("train", help="train and prune to a MACs budget with a training-time method "
                                      "(also under torchrun: DDP)")
    tr.add_argument("--method", required=True, choices=["ghfp", "sfp", "hfp", "dais", "oneshot", "dense"])
    tr.add_argument("--model", default="cifar:resnet20", help="model spec for 3x32x32 inputs, e.g. cifar:resnet56")
    tr.add_argument("--weights", help="local state-dict file to load into the model")
    tr.add_argument("--data", choices=["digits"], default="digits", help="scikit-learn digits at 32x32 (no download)")
    tr.add_argument("--flops", type=float, default=0.5, help="fraction of the dense MACs to keep")
    tr.add_argument("--epochs", type=int, default=10, help="epochs of the method (after any pre-training)")
    tr.add_argument("--pretrain-epochs", type=int, default=0, help="dense training before the method")
    tr.add_argument("--criterion", help="ranking criterion (default: l2 for sfp/hfp/ghfp, l1 for oneshot)")
    tr.add_argument("--scope", choices=["local", "global"])
    tr.add_argument("--search-fraction", type=float, default=0.5, help="dais: share of the epochs spent searching")
    tr.add_argument("--options", help='extra method options as JSON, e.g. \'{"soft_decay": 0.5}\'')
    tr.add_argument("--lr", type=float, default=0.1)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="output directory (result.json, model.fxp)")
    tr.set_defaults(func=cmd_train)

    from .cli_models import add_parsers

    add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 done, 1 the input is wrong (a named error on stderr; the
    traceback only with --verbose), 2 a usage error (argparse)."""
    args = build_parser().parse_args(argv)
    console = Console()
    errors = Console(stderr=True)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.func(args, console)
    except (FxPruneError, OSError) as exc:
        if args.verbose:
            errors.print_exception()
        message = str(exc) if isinstance(exc, FxPruneError) else f"{exc.strerror or exc}: {exc.filename or ''}"
        errors.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with --verbose
        if args.verbose:
            errors.print_exception()
        errors.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}. Rerun with --verbose for the "
                     "traceback and report it.", markup=True, highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
