"""``train``: a training-time method (GHFP, DAIS, ...) to a MACs budget, also under torchrun."""

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

from ..data import digits_loaders
from ..errors import FxPruneError, PlanError
from ..methods.run import MethodConfig, run_method
from ..models import get_model, input_shape
from .. import compiler
from ..module import save
from ..plan import Plan
from ..train import fit
from .common import _json_option, out_dir

__all__ = ["cmd_train"]


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


    options = _json_option(args.options, "--options") if args.options else {}
    out = out_dir(args.out)
    rank, world = _distributed_setup()
    torch.manual_seed(args.seed)
    model, spec = get_model(args.model, args.weights, trusted=args.trust)
    shape = input_shape(spec) or ()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, val, test = _train_loaders(args, world, rank)
    x = next(iter(test))[0][:2]
    if tuple(x.shape[1:]) != tuple(shape[1:]):
        raise FxPruneError(f"--data {args.data} gives inputs of shape {tuple(x.shape[1:])} but {args.model} expects "
                           f"{tuple(shape[1:])}: use a model for 3x32x32 inputs (cifar:resnet20, cifar:resnet56, ...)")
    if args.method in ("dais", "ghfp", "sfp", "hfp") and not args.pretrain_epochs and not args.weights and rank == 0:
        Console(stderr=True).print(
            f"warning: {args.method} starts from an untrained network (no --weights, no --pretrain-epochs): its "
            "rankings and search read trained weights, so accuracy suffers. Pass --pretrain-epochs N or "
            "--weights FILE.", highlight=False)
    if args.pretrain_epochs:
        with console.status(f"pre-training {args.model} for {args.pretrain_epochs} epochs") if rank == 0 else contextlib.nullcontext():
            fit(model, train, epochs=args.pretrain_epochs, lr=args.lr, description="pretrain")
    cfg = MethodConfig(args.method, flops=args.flops, epochs=args.epochs, criterion=args.criterion, scope=args.scope,
                       lr=args.lr, search_fraction=args.search_fraction, progress=rank == 0, options=options)
    small, record = run_method(cfg, model, (x,), train, val, test)
    if not isinstance(small, torch.fx.GraphModule):  # --method dense: the trained model itself
        small = compiler.compile(small, Plan(sparsity=0.0), example_inputs=(x,))
        record["saved_as"] = "the trained dense model compiled with an identity plan (sparsity 0): the same function"
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
