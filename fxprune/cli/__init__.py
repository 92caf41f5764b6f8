"""``fxprune`` command line. Library code logs; this package prints."""

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

from .. import __version__
from ..errors import FxPruneError
from .apps import add_parsers
from .commands import cmd_analyze, cmd_bench, cmd_export, cmd_prune
from .common import _add_model_options, _shape
from .train import cmd_train

__all__ = ["build_parser", "main"]


def _version() -> str:

    return __version__



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxprune", description="Graph-compiler channel pruning for PyTorch.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the compiler does; tracebacks on errors")
    p.add_argument("--version", action="version", version=f"fxprune {__version__}")
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
