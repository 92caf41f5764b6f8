"""Helpers shared by the CLI commands: option parsing, output directories, calibration data, the
pruned model from the shared model/plan options."""

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
from ..apps.cp.data import synthetic_infant_movements
from ..data import digits_loaders
from ..errors import FxPruneError, PlanError
from ..models import example_input, get_model
from ..plan import ATTENTION, LAYER_NORM, Plan

__all__ = ["out_dir"]


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



def _calibration(kind: str, shape: tuple[int, ...], batches: int, seed: int):
    """Calibration batches for data-driven criteria: digits resized to the model's input, or none."""
    if kind == "none":
        return None
    if kind == "skeleton":

        if len(shape) != 4 or shape[1] != 3 or shape[3] != 18:
            raise PlanError(f"--data skeleton gives N x 3 x T x 18 pose sequences; the model's input shape is "
                            f"{tuple(shape)} (use --data digits for image models)")
        return synthetic_infant_movements(32 * batches, frames=shape[2], seed=seed).batches(32)[:batches]


    train, _, _ = digits_loaders(32, seed=seed, channels=shape[1])
    out = []
    for x, y in train:
        if x.shape[-2:] != tuple(shape[-2:]):
            x = F.interpolate(x, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)
        out.append((x, y))
        if len(out) >= batches:
            break
    return out



def _pruned_from_args(args: argparse.Namespace, console: Console):
    """(dense model, pruned model, example input) from --model/--weights and --plan or the
    budget options (--sparsity / --flops / --params / --latency)."""
    model, spec = get_model(args.model, args.weights)
    torch.manual_seed(args.seed)
    x = example_input(spec, args.input_shape)
    shape = tuple(x.shape)
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
                    **extra, **structure_options(args))
    with console.status(f"compiling {args.model}"):
        small = compiler.compile(model, plan, example_inputs=(x,))
    return model, small, x, plan



def _add_model_options(p: argparse.ArgumentParser, *, plan_file: bool = True) -> None:
    """The model, plan and example-input options shared by prune / export / bench."""
    p.add_argument("--model", required=True, help="model spec: torchvision:NAME, timm:NAME, hf:DIR (a local "
                   "HuggingFace config/checkpoint), cifar:NAME, path/to/file.py:factory or package.module:factory")
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
    p.add_argument("--attention", choices=list(ATTENTION), default="heads",
                   help="prune attention by whole heads (default) or by the same head dims in every head")
    p.add_argument("--layer-norm", choices=list(LAYER_NORM), default="exact",
                   help="pruned LayerNorms keep the dense count (exact, default) or become nn.LayerNorm over the kept "
                        "channels (native: faster, a different function; fine-tune)")
    p.add_argument("--prune-outputs", action="store_true", help="the model's outputs may lose channels too (backbones)")
    p.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    p.add_argument("--seed", type=int, default=0)


def structure_options(args: argparse.Namespace) -> dict:
    """The plan's structural options from the command line (absent on older sub-commands)."""
    return {"attention": getattr(args, "attention", "heads"), "layer_norm": getattr(args, "layer_norm", "exact"),
            "prune_outputs": bool(getattr(args, "prune_outputs", False))}
