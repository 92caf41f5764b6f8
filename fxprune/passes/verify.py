"""Verification: the pruned model must equal the masked dense model on the example inputs.

On failure we run both graphs node by node and name the first node whose pruned value differs
from the masked dense value restricted to the kept channels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx
from torch.utils._pytree import tree_leaves

from ..errors import VerificationError
from ..capture.meta import describe_target
from ..graph.factors import FACTORS, kept_indices
from ..capture.copying import clone_inputs, keep_rng, private_runner, reset_buffers
from ..capture.trace import training_mode
from .mask import MASK_OF

__all__ = ["compare", "first_divergence", "output_factors", "restrict_outputs", "run_graph", "verify"]

log = logging.getLogger(__name__)


def compare(out: Any, ref: Any) -> tuple[float, float]:
    """(max |out - ref|, max |ref|) over all tensor leaves; raises on a structure mismatch."""
    a, b = [x for x in tree_leaves(out) if isinstance(x, torch.Tensor)], \
        [x for x in tree_leaves(ref) if isinstance(x, torch.Tensor)]
    if len(a) != len(b):
        raise VerificationError(f"the pruned model returns {len(a)} tensors, the dense model {len(b)}")
    err = scale = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise VerificationError(f"output shape {tuple(x.shape)} differs from the dense {tuple(y.shape)}")
        if x.numel() == 0:
            continue
        x, y = x.detach().double(), y.detach().double()
        both_nan = torch.isnan(x) & torch.isnan(y)
        diff = torch.where(both_nan, torch.zeros_like(x), (x - y).abs())
        err = max(err, float(torch.nan_to_num(diff, nan=float("inf")).max()))
        scale = max(scale, float(torch.nan_to_num(y.abs(), nan=0.0).max()))
    return err, scale


class _Recorder(fx.Interpreter):
    """Keeps a copy of every node's value (masked values under the masked node's name)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.values[n.meta.get(MASK_OF, n.name)] = out.detach().clone()
        return out


def first_divergence(dense_gm: fx.GraphModule, masked_gm: fx.GraphModule, pruned: torch.nn.Module,
                     graph: fx.Graph, inputs: Sequence[Any], id_kept: np.ndarray,
                     atol: float, rtol: float) -> tuple[str, str, float] | None:
    ref = _Recorder(_runner(masked_gm, masked_gm.graph))
    with torch.no_grad(), training_mode(ref.module, False), _same_random_state():
        ref.run(*clone_inputs(inputs))
    mine = _Recorder(_runner(pruned, graph))
    with torch.no_grad(), training_mode(mine.module, False), _same_random_state():
        mine.run(*clone_inputs(inputs))
    for node in dense_gm.graph.nodes:
        if node.name not in ref.values or node.name not in mine.values:
            continue
        r, m = ref.values[node.name], mine.values[node.name]
        factors = node.meta.get(FACTORS)
        if isinstance(factors, tuple):
            for f in factors:
                for a in f.axes:
                    idx = torch.as_tensor(kept_indices(f, a, id_kept), device=r.device)
                    r = r.index_select(a, idx)
        if r.shape != m.shape:
            return node.name, describe_target(dense_gm, node), float("inf")
        err, scale = compare(m, r)
        if err > atol + rtol * scale:
            return node.name, describe_target(dense_gm, node), err
    return None


@contextmanager
def _same_random_state():
    """Run under a fixed seed and restore the caller's RNG state afterwards: dense and pruned
    runs of a graph with random ops (dropout written as a function, stochastic depth) draw the
    same numbers where the graphs draw them in the same order."""
    with keep_rng():
        torch.manual_seed(_VERIFY_SEED)  # seeds CUDA too; keep_rng restores the CPU stream
        yield


_VERIFY_SEED = 20240611


_DROPOUTS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
             torch.dropout, torch.alpha_dropout, torch.feature_dropout, torch.feature_alpha_dropout)


def _runner(module: torch.nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """A private runner (see ``private_runner``) whose dropout calls are identities: a dropout
    written as a function (``F.dropout(x, training=self.training)``) draws one number per
    element, so the dense and the pruned run cannot draw the same mask; attention runs with
    ``dropout_p=0``. Dropout modules are identities already (every module runs in eval mode)."""
    runner = private_runner(module, graph)
    changed = False
    for n in list(runner.graph.nodes):
        if n.op == "call_function" and n.target in _DROPOUTS:
            x = n.args[0] if n.args else n.kwargs.get("input")
            n.replace_all_uses_with(x)
            runner.graph.erase_node(n)
            changed = True
        elif n.op == "call_function" and n.target is F.scaled_dot_product_attention:
            # attention dropout (the train graph of HF models) draws per head: run it without
            if len(n.args) > 4:
                n.args = (*n.args[:4], 0.0, *n.args[5:])
            else:
                n.kwargs = {**n.kwargs, "dropout_p": 0.0}
            changed = True
    if changed:
        runner.recompile()
    return runner


def run_graph(module: torch.nn.Module, graph: fx.Graph, inputs: Sequence[Any],
              runner: fx.GraphModule | None = None) -> Any:
    """``graph`` on ``module``'s tensors without writing to any of them (private buffers, copied
    inputs), every module in eval mode, dropout functions as identities, no grad, under the
    verification seed (other random ops, e.g. stochastic depth's per-sample draw, repeat).
    ``runner``: a ``_runner(module, graph)`` to reuse (its buffers are reset first)."""
    if runner is None:
        runner = _runner(module, graph)
    else:
        reset_buffers(runner)
    with torch.no_grad(), training_mode(runner, False), _same_random_state():
        return runner(*clone_inputs(inputs))


def output_factors(gm: fx.GraphModule) -> list[Any]:
    """The channel factors of every tensor the graph returns, in ``tree_leaves`` order (None where
    a leaf carries none)."""
    out: list[Any] = []

    def tree(t: Any) -> None:
        if isinstance(t, tuple):
            out.append(t)
        elif isinstance(t, list):
            for x in t:
                tree(x)
        elif isinstance(t, dict):
            for x in t.values():
                tree(x)
        else:
            out.append(None)

    def arg(a: Any) -> None:
        if isinstance(a, fx.Node):
            tree(a.meta.get(FACTORS))
        elif isinstance(a, (tuple, list)):
            for x in a:
                arg(x)
        elif isinstance(a, dict):
            for x in a.values():
                arg(x)

    for n in gm.graph.nodes:
        if n.op == "output":
            arg(n.args[0])
    return out


def restrict_outputs(ref: Any, dense_gm: fx.GraphModule, id_kept: np.ndarray) -> Any:
    """The masked dense outputs on the channels the pruned model keeps: unchanged unless the plan
    let outputs lose channels (``Plan(prune_outputs=True)``)."""
    leaves = [x for x in tree_leaves(ref) if isinstance(x, torch.Tensor)]
    factors = output_factors(dense_gm)
    cuts = [[(a, kept_indices(f, a, id_kept)) for f in fs for a in f.axes] if fs else [] for fs in factors]
    if not any(len(idx) < x.shape[a] for c, x in zip(cuts, leaves) for a, idx in c):
        return ref
    if len(factors) != len(leaves):
        raise VerificationError(f"cannot match the {len(leaves)} output tensors to the graph's {len(factors)} "
                                "outputs to compare their kept channels")
    out = []
    for x, c in zip(leaves, cuts):
        for a, idx in c:
            if len(idx) < x.shape[a]:
                x = x.index_select(a, torch.as_tensor(idx, device=x.device))
        out.append(x)
    return out


def verify(pruned: torch.nn.Module, graph: fx.Graph, dense_gm: fx.GraphModule,
           masked_gm: fx.GraphModule, inputs: Sequence[Any], id_kept: np.ndarray, *, atol: float, rtol: float,
           mode: str = "eval", extra_inputs: Sequence[Any] | None = None) -> tuple[float, float]:
    """(max abs error, max |reference|) of ``graph`` on ``pruned``'s tensors against the masked
    dense graph, on ``inputs`` and then ``extra_inputs`` (skipped when the dense model itself
    fails on them); raises VerificationError (naming the first diverging node) beyond
    ``atol + rtol * max|ref|``. Every module runs in eval mode, also for the train-mode graph
    (only the graph structure differs); random ops draw from the same seeded state in both runs;
    neither run writes to the caller's or the pruned model's tensors."""
    ref_runner, mine_runner = _runner(masked_gm, masked_gm.graph), _runner(pruned, graph)
    err = scale = 0.0
    for which, xs in (("", inputs), (", seeded random input", extra_inputs)):
        if xs is None:
            continue
        try:
            ref = run_graph(masked_gm, masked_gm.graph, xs, ref_runner)
        except Exception as exc:  # noqa: BLE001 - the dense model rejects noise input: that check is skipped
            if not which:
                raise
            log.info("verification on a random input skipped (%s graph): the dense model fails on it: %s", mode, exc)
            continue
        out = run_graph(pruned, graph, xs, mine_runner)
        e, s = compare(out, restrict_outputs(ref, dense_gm, id_kept))
        _check(e, s, atol, rtol, dense_gm, masked_gm, pruned, graph, xs, id_kept, f"{mode} graph{which}")
        err, scale = max(err, e), max(scale, s)
    return err, scale


def _check(err: float, scale: float, atol: float, rtol: float, dense_gm: fx.GraphModule, masked_gm: fx.GraphModule,
           pruned: torch.nn.Module, graph: fx.Graph, inputs: Sequence[Any], id_kept: np.ndarray, mode: str) -> None:
    if err <= atol + rtol * scale:
        return
    with torch.no_grad():
        where = first_divergence(dense_gm, masked_gm, pruned, graph, inputs, id_kept, atol, rtol)
    if where is None:
        raise VerificationError(f"the pruned model ({mode}) differs from the masked dense model by {err:.3g} "
                                f"(max |ref| {scale:.3g})", max_abs_error=err)
    name, op, node_err = where
    raise VerificationError(
        f"the pruned model ({mode}) differs from the masked dense model by {err:.3g} (max |ref| {scale:.3g}); "
        f"the first diverging node is `{name}` ({op}, error {node_err:.3g}). Its channel rule is wrong for this use: "
        f"mark that layer in Plan(ignore=[...]) or report the op.", node=name, max_abs_error=err)
