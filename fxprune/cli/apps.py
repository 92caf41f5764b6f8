"""CLI commands of the application models: ``explain-joints`` (skeleton CP model) and ``stylize``
(ArtNet). Library code logs; this module prints."""

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
from ..apps import artnet as A
from ..apps.cp.data import load_skeleton_npz, synthetic_infant_movements
from ..apps.cp.joints import importance_record, plot_skeleton, write_importance
from ..apps.cp.model import CPAttentionNet, evaluate_cp, joint_importance, train_cp
from ..methods import zero_channel_prune
from ..models import load_weights
from ..module import save
from ..plan import Plan
from ..report import report
from .common import out_dir

__all__ = ["add_parsers", "cmd_explain_joints", "cmd_stylize"]


def cmd_explain_joints(args: argparse.Namespace, console: Console) -> int:

    torch.manual_seed(args.seed)
    if args.data == "synthetic":
        data = synthetic_infant_movements(args.samples, frames=args.frames, planted=args.planted, seed=args.seed)
    else:
        data = load_skeleton_npz(args.data)
    train, test = data.split(0.75, seed=args.seed)
    n_classes = int(data.y.max()) + 1
    model = CPAttentionNet(in_channels=data.x.shape[1], joints=data.x.shape[3], num_classes=n_classes)
    out = out_dir(args.out)
    if args.weights:
        load_weights(model, args.weights)
    else:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("training", total=args.epochs)
            train_cp(model, train, epochs=args.epochs, attention_l1=args.attention_l1, seed=args.seed,
                     progress=lambda e, log: bar.update(task, advance=1, description=f"training loss {log['loss']:.3f}"))
        torch.save(model.state_dict(), out / "model.pt")
    acc = evaluate_cp(model, test)
    imp = joint_importance(model, test)
    extra = {"test_accuracy": acc, "data": data.meta, "samples_scored": len(test)}
    if args.prune:
        calib = [xb for xb, _ in train.batches(64)][:4]
        small = compiler.compile(model, Plan(sparsity=args.prune, criterion="attention"), test.x[:8], calibration_data=calib)
        r = report(small)
        extra["pruned"] = {"sparsity": args.prune, "criterion": "attention", "test_accuracy": evaluate_cp(small, test),
                           "macs_ratio": r.macs_after / r.macs_before, "params_ratio": r.params_after / r.params_before,
                           "max_abs_error_vs_masked": r.max_abs_error}
        save(small, out / "pruned.fxp")
    rec = importance_record(imp, data.joints, data.planted, **extra)
    write_importance(rec, out / "joints.json")
    plot_skeleton(imp, out / "joints.png", joints=data.joints, planted=data.planted)
    t = Table(title=f"joint importance (test accuracy {acc:.1%})")
    for col in ("rank", "joint", "importance", "planted"):
        t.add_column(col, justify="right" if col != "joint" else "left")
    planted = set(data.planted)
    for row in rec["joints"][: args.top]:
        t.add_row(str(row["rank"]), row["joint"], f"{row['importance']:.3f}", "yes" if row["index"] in planted else "")
    console.print(t)
    if "pruned" in extra:
        p = extra["pruned"]
        console.print(f"pruned with the attention criterion at sparsity {args.prune}: MACs x{p['macs_ratio']:.2f}, "
                      f"test accuracy {p['test_accuracy']:.1%} (before fine-tuning)")
    console.print(f"wrote {out / 'joints.json'}, {out / 'joints.png'}")
    return 0



def cmd_stylize(args: argparse.Namespace, console: Console) -> int:

    t0 = time.perf_counter()
    content = A.load_image(args.content, size=args.size)
    style = A.load_image(args.style, size=args.style_size or args.size)
    decoder = args.decoder_weights
    if decoder is None and args.encoder_weights is None and A.default_decoder_weights() is not None:
        decoder = "bundled"  # trained for the seeded encoder: not for other encoder weights
    net = A.ArtNet(transform=args.transform, alpha=args.alpha, encoder_weights=args.encoder_weights,
                        decoder_weights=decoder, max_patches=args.max_patches)
    if args.zero_prune:

        z = zero_channel_prune(net, [((content, style), None)])
        t = Table(title=f"zero channels on this content/style pair: {z.removed} of {z.prunable}, "
                        f"max |dense - pruned| {z.max_abs_error:.2g}")
        for col in ("layer", "zero", "channels"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for layer in z.layers:
            if layer["zero"]:
                t.add_row(", ".join(layer["modules"]), str(layer["zero"]), str(layer["channels"]))
        console.print(t)
        net = z.model
    with torch.no_grad():
        out = net(content, style)
    A.save_image(out, args.output)
    console.print(f"wrote {args.output} ({out.shape[-1]}x{out.shape[-2]}, transform {args.transform}, "
                  f"{time.perf_counter() - t0:.1f} s)")
    if decoder is None:
        console.print("[yellow]note:[/yellow] no decoder trained for this encoder (--decoder-weights); the "
                      "output comes from a random decoder")
    return 0



