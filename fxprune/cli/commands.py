"""``prune``, ``analyze``, ``export`` and ``bench``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .. import compiler
from ..analysis import analyze_criteria
from ..bench import BenchConfig, compare
from ..bench.plots import plot_latency
from ..errors import FxPruneError, PlanError
from ..export import build_engine, export_onnx
from ..export.tensorrt import require_cuda, require_tensorrt, tensorrt_version
from ..models import example_input, get_model
from ..module import save
from ..plan import Plan
from ..report import RESOLUTION_KEY, report
from .common import _calibration, _fmt, _pruned_from_args, out_dir, status, structure_options

__all__ = ["cmd_analyze", "cmd_bench", "cmd_export", "cmd_prune"]


def cmd_prune(args: argparse.Namespace, console: Console) -> int:
    if args.json:
        console = Console(stderr=True)  # stdout carries the JSON alone
    out = out_dir(args.out)
    model, spec = get_model(args.model, args.weights, trusted=args.trust)
    torch.manual_seed(args.seed)
    x = example_input(spec, args.input_shape)
    shape = tuple(x.shape)
    budget = {"flops": args.flops} if args.flops is not None else {"params": args.params} if args.params is not None \
        else {"sparsity": args.sparsity if args.sparsity is not None else 0.5}
    plan = Plan(criterion=args.criterion, scope=args.scope, round_to=args.round_to, min_channels=args.min_channels,
                ignore=args.ignore or (), seed=args.seed, **budget, **structure_options(args),
                backend="ort" if args.round_to == "auto" else None)
    data = _calibration(args.data, shape, args.batches, args.seed)
    what = ", ".join(f"{k}={v:g}" for k, v in budget.items())
    with status(console, f"compiling {args.model} at {what} ({args.criterion}, {plan.scope})"):
        t0 = time.perf_counter()
        small = compiler.compile(model, plan, example_inputs=(x,), verify=not args.no_verify, calibration_data=data)
        total = time.perf_counter() - t0
    rep = report(small)
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
    if args.json:
        print(json.dumps({"model": args.model, "macs_ratio": rep.macs_ratio, "params_ratio": rep.params_ratio,
                          "max_abs_error": rep.max_abs_error, "relative_error": rep.relative_error,
                          "seconds": total, "capture": rep.capture, "out": str(out), "notes": rep.notes}))
    return 0



def cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    if args.json:
        console = Console(stderr=True)  # stdout carries the JSON alone
    out_dir(args.out)
    model, spec = get_model(args.model, args.weights, trusted=args.trust)
    torch.manual_seed(args.seed)
    x = example_input(spec, args.input_shape)
    shape = tuple(x.shape)
    data = _calibration(args.data, shape, args.batches, args.seed)
    with status(console, f"analysing criteria {', '.join(args.criteria)} on {args.model}"):
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
    if args.json:
        print(json.dumps({"model": args.model, "files": [str(p) for p in files], **s}, indent=1, default=str))
    return 0



def cmd_export(args: argparse.Namespace, console: Console) -> int:
    if args.json:
        console = Console(stderr=True)  # stdout carries the JSON alone
    model, small, x, plan = _pruned_from_args(args, console)
    xb = x[:1].expand(args.batch, *x.shape[1:]).contiguous()
    with console.status(f"exporting {args.onnx}"):
        exp = export_onnx(small, (xb,), args.onnx, opset=args.opset, exporter=args.exporter, fp16=args.fp16 and not
                          args.trt, dynamic_batch=False if args.static_batch else None)
    rep = report(small)
    info = {"model": args.model, "plan": plan.to_dict(), "macs_ratio": rep.macs_ratio, "params_ratio": rep.params_ratio,
            "onnx": exp.to_dict(), "plan_measurement": rep.latency}
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

        require_tensorrt()
        require_cuda()
        src = exp
        if args.fp16 and int(str(tensorrt_version()).split(".")[0]) >= 11:  # strongly typed: FP16 comes from the ONNX
            src = export_onnx(small, (xb,), Path(args.onnx).with_suffix(".fp16.onnx"), opset=args.opset,
                              exporter=args.exporter, fp16=True, dynamic_batch=False if args.static_batch else None)
        build = build_engine(src.path, args.trt, fp16=args.fp16, input_shapes={src.input_names[0]: tuple(xb.shape)},
                             max_batch=args.max_batch, workspace_gib=args.workspace_gib, timing_cache=args.timing_cache)
        info["tensorrt"] = build.to_dict()
        console.print(f"TensorRT {build.tensorrt_version}: wrote {build.engine_path} ({build.precision}"
                      f"{', via ' + build.fp16_via if build.fp16_via else ''}) in {build.seconds:.1f}s")
    Path(args.onnx).with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
    console.print(f"wrote {args.onnx} and {Path(args.onnx).with_suffix('.json')}")
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    return 0



def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    if args.json == "-":
        console = Console(stderr=True)  # stdout carries the JSON alone
    model, small, x, plan = _pruned_from_args(args, console)
    landing = report(small).latency
    cfg = BenchConfig(backends=args.backend, batch=args.batch, threads=args.threads, warmup=args.warmup,
                      iters=args.iters, processes=args.processes,
                      extra={"model": args.model, "plan": plan.to_dict()})
    with Progress(transient=True, console=console) as bar:
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
    if landing is not None:
        res["plan_measurement"] = landing
        res["iterations"] = landing["iterations"]
        its = Table(title=f"plan measured on {landing['backend']} while compiling (round_to {landing['round_to']})")
        for col in ("iteration", "planner target", "measured latency ratio", "speed-up"):
            its.add_column(col, justify="right")
        for i, it in enumerate(landing["iterations"], 1):
            its.add_row(str(i), "-" if it["asked"] is None else f"{it['asked']:.3f}", f"{it['ratio']:.3f}",
                        f"{1 / it['ratio']:.2f}x")
        console.print(its)
    if args.json == "-":
        print(json.dumps(res, indent=1))
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))
        console.print(f"wrote {args.json}")
    if args.plot:
        plot_latency([res], args.plot)
        console.print(f"wrote {args.plot}")
    return 0
