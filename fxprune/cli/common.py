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

from .. import compiler, progress
from ..apps.cp.data import synthetic_infant_movements
from ..data import digits_loaders
from ..errors import FxPruneError, PlanError
from ..models import example_input, get_model
from ..plan import Plan

__all__ = ["out_dir", "status"]


@contextlib.contextmanager
def status(console: Console, message: str):
    """A spinner showing ``message`` and the step the library call under it is at (trace, verify,
    the backend's rounds, the latency table's layers)."""
    with console.status(message) as spinner, progress.listening(lambda step: spinner.update(f"{message}: {step}")):
        yield spinner


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



def plan_backend(args: argparse.Namespace) -> str | None:
    """The backend a CLI plan is measured on: --latency-backend, else (bench) ort or eager when
    among the timed --backend list; None for prune."""
    chosen = getattr(args, "latency_backend", None)
    if chosen == "none":
        return None
    if chosen:
        return chosen
    timed = getattr(args, "backend", None) or []
    return next((b for b in ("ort", "eager") if b in timed), None)


def _pruned_from_args(args: argparse.Namespace, console: Console):
    """(dense model, pruned model, example input) from --model/--weights and --plan or the
    budget options (--sparsity / --flops / --params / --latency)."""
    model, spec = get_model(args.model, args.weights, trusted=args.trust)
    torch.manual_seed(args.seed)
    x = example_input(spec, args.input_shape)
    shape = tuple(x.shape)
    if args.plan:
        plan = Plan.from_json(args.plan)
    else:
        budget = {"flops": args.flops} if args.flops is not None else {"params": args.params} \
            if args.params is not None else {"sparsity": args.sparsity if args.sparsity is not None else 0.5}
        backend = plan_backend(args)
        if getattr(args, "latency", None) is not None:
            budget = {"latency": args.latency}
            backend = backend or "ort"
        if args.round_to == "auto" and backend is None:
            backend = "ort"
        plan = Plan(criterion=args.criterion, scope=args.scope, round_to=args.round_to, seed=args.seed, **budget,
                    backend=backend, **structure_options(args))
    with status(console, f"compiling {args.model}"):
        small = compiler.compile(model, plan, example_inputs=(x,))
    return model, small, x, plan



def structure_options(args: argparse.Namespace) -> dict:
    """The plan's structural options from the command line (absent on older sub-commands)."""
    return {"attention": getattr(args, "attention", "heads"), "layer_norm": getattr(args, "layer_norm", "exact"),
            "prune_outputs": bool(getattr(args, "prune_outputs", False))}
