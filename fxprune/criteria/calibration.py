"""Activation statistics over calibration batches, read where a channel *ends*: at the inputs of
the nodes that consume it (its *sink* tensors), and at channel-attention gates. The data criteria
(``criteria.activations``: zero_channel, taylor, attention) score classes from these statistics.

Calibration data: an iterable of batches, each an input tensor, a tuple of inputs, or a pair
``(inputs, targets)`` where inputs is a tensor or tuple of tensors. The traced eval graph is run
in eval mode; the caller's model is not changed (no gradients land on its parameters).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from ..errors import PlanError
from ..graph.factors import FACTORS
from ..graph.channel_graph import Group
from ..capture.meta import node_shape
from ..capture.copying import private_runner
from ..graph.factors import Factor
from ..capture.trace import training_mode

__all__ = ["collect", "gates", "sinks", "split_batch"]

# ``ctx`` below is a ``criteria.base.ScoringContext`` (which calls ``collect``; not imported back).
ScoringContext = Any

log = logging.getLogger(__name__)

_MUL = {operator.mul, torch.mul, "mul", operator.imul}


def split_batch(batch: Any) -> tuple[tuple[Any, ...], Any]:
    """(inputs, targets or None) of one calibration batch."""
    if isinstance(batch, torch.Tensor):
        return (batch,), None
    if isinstance(batch, dict):
        raise PlanError("calibration batches must be tensors or (inputs, targets) pairs, not dicts")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
        return (tuple(x) if isinstance(x, (tuple, list)) else (x,)), y
    if isinstance(batch, (tuple, list)):
        return tuple(batch), None
    raise PlanError(f"calibration batch of type {type(batch).__name__}: expected a tensor or (inputs, targets)")


def sinks(ctx: ScoringContext) -> dict[str, list[tuple[Factor, np.ndarray]]]:
    """node name -> [(factor, bool per position: the class ends after this tensor)]."""
    cg, roots = ctx.cg, ctx.cg.roots
    found: dict[tuple[str, int], tuple[Factor, np.ndarray]] = {}
    for node in ctx.gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        out = [f.ids.ravel() for f in _tensor_factors(node)]
        out_roots = np.unique(roots[np.concatenate(out)]) if out else np.zeros(0, dtype=np.int64)
        for a in node.all_input_nodes:
            for f in _tensor_factors(a):
                r = roots[f.ids.ravel()]
                end = ~np.isin(r, out_roots) & (cg.group_of[r] >= 0)
                if end.any():
                    key = (a.name, id(f))
                    have = found.get(key)
                    found[key] = (f, end if have is None else have[1] | end)
    by_node: dict[str, list[tuple[Factor, np.ndarray]]] = {}
    for (name, _), v in found.items():
        by_node.setdefault(name, []).append(v)
    return by_node


def gates(ctx: ScoringContext) -> dict[str, list[tuple[Factor, np.ndarray]]]:
    """node name -> factors of tensors used as channel-attention gates (broadcast multiplied onto
    a larger tensor over its non-channel axes)."""
    out: dict[str, list[tuple[Factor, np.ndarray]]] = {}
    for node in ctx.gm.graph.nodes:
        if not ((node.op == "call_function" or node.op == "call_method") and node.target in _MUL):
            continue
        args = [a for a in node.args[:2] if isinstance(a, fx.Node)]
        if len(args) != 2:
            continue
        for g, x in (args, args[::-1]):
            sg, sx = node_shape(g), node_shape(x)
            if sg is None or sx is None or len(sg) != len(sx) or not _tensor_factors(g):
                continue
            broadcast = [k for k in range(len(sg)) if sg[k] == 1 and sx[k] > 1]
            if broadcast:
                out[g.name] = [(f, np.ones(f.ids.size, dtype=bool)) for f in _tensor_factors(g)]
    return out


def _tensor_factors(node: Any) -> tuple[Factor, ...]:
    f = node.meta.get(FACTORS) if isinstance(node, fx.Node) else None
    return f if isinstance(f, tuple) else ()


def _per_position(v: torch.Tensor, f: Factor, reduce: str, keep_batch: bool = False) -> torch.Tensor:
    """``v`` reduced over every axis but the factor's (and the batch axis with ``keep_batch``):
    shape (positions,) or (batch, positions)."""
    axes = list(f.axes)
    lead = [0] if keep_batch else []
    others = [d for d in range(v.ndim) if d not in axes and d not in lead]
    v = v.permute(lead + axes + others)
    n = int(np.prod(f.ids.shape))
    v = v.reshape(*( [v.shape[0]] if keep_batch else []), n, -1)
    if reduce == "max_abs":
        return v.abs().amax(-1)
    if reduce == "sum_abs":
        return v.abs().sum(-1)
    if reduce == "sum":
        return v.sum(-1)
    raise AssertionError(reduce)


class _Watcher(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, watch: Iterable[str]) -> None:
        super().__init__(gm)
        self.watch, self.values = set(watch), {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.watch and isinstance(out, torch.Tensor):
            self.values[n.name] = out
        return out


def collect(ctx: ScoringContext, kind: str) -> np.ndarray:
    """Per-id statistic ``kind`` ("zero_channel", "taylor", "gate_mean", "mean_abs") over the
    calibration data; indexed by union-find root."""
    cg = ctx.cg
    where = gates(ctx) if kind == "gate_mean" else sinks(ctx)
    # every (tensor, factor) entry: root of each watched position, and its index among all watched roots
    entries = {name: [(f, end, cg.roots[f.ids.ravel()][end]) for f, end in fs] for name, fs in where.items()}
    all_roots = np.unique(np.concatenate([r for fs in entries.values() for _, _, r in fs])) \
        if entries else np.zeros(0, dtype=np.int64)
    stat = np.zeros(cg.uf.n)
    count = np.zeros(cg.uf.n)
    samples = 0
    grad = kind == "taylor"
    runner = private_runner(ctx.gm)  # calibration never writes to the caller's buffers
    with training_mode(runner, False), torch.set_grad_enabled(grad):
        for i, batch in enumerate(ctx.data):
            inputs, target = split_batch(batch)
            w = _Watcher(runner, entries)
            try:
                out = w.run(*inputs)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__ for x in inputs]
                raise PlanError(f"calibration batch {i} (inputs {shapes}) does not run through the model: "
                                f"{str(exc).splitlines()[0]}. Calibration batches must look like the example "
                                "inputs.") from exc
            bsz = _batch_size(inputs)
            samples += bsz
            if grad:
                loss = _loss(ctx, out, target)
                names = [k for k in entries if k in w.values and w.values[k].requires_grad]
                grads = torch.autograd.grad(loss, [w.values[k] for k in names], allow_unused=True)
                per_sample = torch.zeros(bsz, len(all_roots), dtype=torch.float64)
                for name, g in zip(names, grads):
                    if g is None:
                        continue
                    for f, end, r in entries[name]:
                        contrib = _per_position(w.values[name].detach() * g, f, "sum", keep_batch=True)
                        idx = torch.from_numpy(np.searchsorted(all_roots, r))
                        per_sample.index_add_(1, idx, contrib[:, torch.from_numpy(np.nonzero(end)[0])].double())
                stat[all_roots] += per_sample.abs().sum(0).numpy()
                continue
            for name, fs in entries.items():
                v = w.values.get(name)
                if v is None:
                    continue
                for f, end, r in fs:
                    if kind == "zero_channel":
                        np.maximum.at(stat, r, _per_position(v, f, "max_abs").double().cpu().numpy()[end])
                    else:  # mean over the batch and the non-channel positions, averaged over tensors
                        per = v.numel() / f.ids.size
                        src = v if kind == "gate_mean" else v.abs()
                        mean = _per_position(src, f, "sum").double().cpu().numpy()[end] / per
                        np.add.at(stat, r, mean * bsz)
                        np.add.at(count, r, bsz)
    if samples == 0:
        raise PlanError("calibration_data yielded no batch")
    if kind == "taylor":
        return stat / samples
    if kind in ("gate_mean", "mean_abs"):
        return stat / np.maximum(count, 1)
    return stat


def _batch_size(inputs: tuple[Any, ...]) -> int:
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.ndim:
            return int(x.shape[0])
    return 1


def _loss(ctx: ScoringContext, out: Any, target: Any) -> torch.Tensor:
    if ctx.loss_fn is not None:
        return ctx.loss_fn(out, target)
    if target is None:
        raise PlanError("criterion 'taylor' needs a loss: give calibration batches as (inputs, targets) or pass "
                        "calibration_loss=fn(output, target)")
    if not isinstance(out, torch.Tensor):
        raise PlanError("the model returns a non-tensor output; pass calibration_loss=fn(output, target) for 'taylor'")
    if not target.is_floating_point():
        return F.cross_entropy(out, target, reduction="sum")
    return F.mse_loss(out, target, reduction="sum")


