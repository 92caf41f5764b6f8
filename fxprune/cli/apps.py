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



def add_parsers(sub: argparse._SubParsersAction) -> None:
    ej = sub.add_parser("explain-joints", help="train (or load) the skeleton channel-attention model and write "
                                               "per-joint importance (JSON + PNG)")
    ej.add_argument("--data", default="synthetic",
                    help="'synthetic' (generated infant movements, signal planted in known joints) or an .npz with "
                         "x (N x C x T x V) and y (N)")
    ej.add_argument("--samples", type=int, default=600, help="synthetic: number of sequences")
    ej.add_argument("--frames", type=int, default=64, help="synthetic: frames per sequence")
    ej.add_argument("--planted", nargs="+", default=["l_wrist", "r_ankle"], help="synthetic: joints carrying the class")
    ej.add_argument("--weights", help="a CPAttentionNet state dict to load instead of training")
    ej.add_argument("--epochs", type=int, default=15)
    ej.add_argument("--attention-l1", type=float, default=0.05, help="L1 weight on the joint-attention gates")
    ej.add_argument("--prune", type=float, help="also prune with the attention criterion at this sparsity")
    ej.add_argument("--top", type=int, default=8, help="rows of the printed table")
    ej.add_argument("--seed", type=int, default=0)
    ej.add_argument("--out", default="runs/joints", help="output directory")
    ej.set_defaults(func=cmd_explain_joints)

    st = sub.add_parser("stylize", help="ArtNet universal style transfer of one image (bundled sample images "
                                        "by default)")
    st.add_argument("content", nargs="?", default="skimage:astronaut",
                    help="content image file, or skimage:NAME for a scikit-image sample")
    st.add_argument("style", nargs="?", default="skimage:hubble_deep_field", help="style image (file or skimage:NAME)")
    st.add_argument("-o", "--output", default="stylized.png")
    st.add_argument("--size", type=int, default=512, help="content is resized to size x size")
    st.add_argument("--style-size", type=int, help="style resize (default: --size)")
    st.add_argument("--transform", choices=["s2", "adain", "wct"], default="s2")
    st.add_argument("--alpha", type=float, default=1.0, help="content/style blend (1: full style)")
    st.add_argument("--max-patches", type=int, default=1024, help="s2: cap on 3x3 style patches")
    st.add_argument("--encoder-weights", help="a local torchvision GoogLeNet state-dict file (never downloaded)")
    st.add_argument("--decoder-weights", help="decoder (or whole ArtNet) state-dict file; default: the bundled one")
    st.add_argument("--zero-prune", action="store_true", help="run the zero-channel-pruned model (exact)")
    st.set_defaults(func=cmd_stylize)
