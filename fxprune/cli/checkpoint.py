"""``resolve`` (a resolution, without building the model) and ``apply`` (a resolution written
to a HuggingFace checkpoint, shard by shard)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from .. import compiler
from ..checkpoint import prune_checkpoint
from ..errors import FxPruneError
from ..graph.costmodel import params_model
from ..models import example_input, get_model, load_weights
from ..plan import Plan, Resolution
from .common import _fmt, out_dir, status

__all__ = ["cmd_apply", "cmd_resolve"]


def _peak_rss_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (2**30 if sys.platform == "darwin" else 2**20)


def _model(args: argparse.Namespace):
    """The model (on meta for hf-config:), its example input, and the shards directory when the
    weights stay on disk."""
    model, spec = get_model(args.model)
    torch.manual_seed(getattr(args, "seed", 0))
    x = example_input(spec, args.input_shape)
    shards = None
    if args.weights is not None:
        if compiler.on_meta(model):
            if not Path(args.weights).is_dir():
                raise FxPruneError(f"--weights {args.weights}: a model on the meta device reads its weights from a "
                                   "directory of safetensors shards")
            shards = args.weights
        else:
            load_weights(model, args.weights)
    return model, x, shards


def cmd_resolve(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise FxPruneError(f"--out {args.out} is a directory; give the resolution JSON file to write")
    model, x, shards = _model(args)
    budget = {"flops": args.flops} if args.flops is not None else {"params": args.params} if args.params is not None \
        else {"sparsity": args.sparsity if args.sparsity is not None else 0.5}
    plan = Plan(criterion=args.criterion, round_to=args.round_to, uniform=args.uniform, attention=args.attention,
                ignore=args.ignore or (), seed=args.seed, **budget)
    t0 = time.perf_counter()
    with status(console, f"resolving {args.model}"):
        a = compiler.analyse(model, (x,), attention=plan.attention, prune_outputs=plan.prune_outputs)
        resolution = compiler.resolve(model, plan, analysis=a, weights=shards)
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    resolution.to_json(out)
    params = params_model(a.cg, a.model)
    kept = params.evaluate(compiler.kept_ids(a, resolution).astype(float))
    table = Table(title=f"fxprune resolve: {args.model}")
    for col in ("groups", "pruned groups", "params dense", "params kept", "ratio", "seconds", "peak RSS"):
        table.add_column(col, justify="right")
    pruned = sum(1 for c in resolution.groups.values() if len(c.keep) < c.size)
    table.add_row(str(len(resolution.groups)), str(pruned), _fmt(params.dense), _fmt(kept),
                  f"{kept / params.dense:.3f}", f"{seconds:.1f}s", f"{_peak_rss_gb():.2f} GB")
    console.print(table)
    console.print(f"wrote {out}" + ("" if shards is None else f" (scores read from {shards})"))
    return 0


def cmd_apply(args: argparse.Namespace, console: Console) -> int:
    out = out_dir(args.out)
    model, spec = get_model(args.model)
    x = example_input(spec, args.input_shape)
    resolution = Resolution.from_json(args.resolution)
    t0 = time.perf_counter()
    with status(console, f"writing the pruned checkpoint of {args.model}"):
        written = prune_checkpoint(model, resolution, args.weights, out, example_inputs=(x,),
                                   max_shard_bytes=args.max_shard_size)
    seconds = time.perf_counter() - t0
    table = Table(title=f"fxprune apply: {out}")
    table.add_column("config", style="bold")
    table.add_column("dense", justify="right")
    table.add_column("pruned", justify="right")
    for key, (old, new) in written.config.items():
        table.add_row(key, f"{old:g}" if isinstance(old, float) else str(old),
                      f"{new:g}" if isinstance(new, float) else str(new))
    table.add_row("parameters", _fmt(written.params_dense), _fmt(written.params_pruned))
    table.add_row("bytes", _fmt(written.bytes_in), _fmt(written.bytes_out))
    console.print(table)
    console.print(f"{written.tensors} tensors into {len(written.shards)} shard(s) in {seconds:.1f}s, peak RSS "
                  f"{_peak_rss_gb():.2f} GB; load it with "
                  f"{type(model).__name__}.from_pretrained({json.dumps(str(out))})")
    return 0
