"""Verification: the pruned model must equal the masked dense model on the example inputs.

On failure we run both graphs node by node and name the first node whose pruned value differs
from the masked dense value restricted to the kept channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx
from torch.utils._pytree import tree_leaves

from ..errors import VerificationError
from ..graph.channels import FACTORS, describe_target
from ..graph.factors import kept_indices
from ..graph.trace import training_mode
from .mask import MASK_OF


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
    ref = _Recorder(masked_gm)
    ref.run(*inputs)
    mine_gm = fx.GraphModule(pruned, graph)
    mine = _Recorder(mine_gm)
    mine.run(*inputs)
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


def verify(pruned: torch.nn.Module, forward: Callable, graph: fx.Graph, dense_gm: fx.GraphModule,
           masked_gm: fx.GraphModule, inputs: Sequence[Any], id_kept: np.ndarray, *, atol: float, rtol: float,
           mode: str = "eval") -> tuple[float, float]:
    """(max abs error, max |reference|) of ``forward(pruned, *inputs)`` against the masked dense
    graph; raises
    VerificationError (naming the first diverging node) beyond ``atol + rtol * max|ref|``.
    Every module runs in eval mode, also for the train-mode graph (deterministic: only the
    graph structure differs)."""
    with torch.no_grad(), training_mode(pruned, False), training_mode(masked_gm, False):
        ref = masked_gm(*inputs)
        out = forward(pruned, *inputs)
        err, scale = compare(out, ref)
        if err <= atol + rtol * scale:
            return err, scale
        where = first_divergence(dense_gm, masked_gm, pruned, graph, inputs, id_kept, atol, rtol)
    if where is None:
        raise VerificationError(f"the pruned model ({mode} graph) differs from the masked dense model by {err:.3g} "
                                f"(max |ref| {scale:.3g})", max_abs_error=err)
    name, op, node_err = where
    raise VerificationError(
        f"the pruned model ({mode} graph) differs from the masked dense model by {err:.3g} (max |ref| {scale:.3g}); "
        f"the first diverging node is `{name}` ({op}, error {node_err:.3g}). Its channel rule is wrong for this use: "
        f"mark that layer in Plan(ignore=[...]) or report the op.", node=name, max_abs_error=err)
