"""The non-exact, native LayerNorm form (``Plan(layer_norm="native")``) and its reference.

The exact rewrite keeps the dense channel count in a pruned LayerNorm (``DenseLayerNorm``). The
native form is a plain ``nn.LayerNorm(K)`` / ``F.layer_norm(x, (K,))`` over the kept channels:
the standard op every backend fuses, but a different function (mean and variance over K, not
D), so the model needs fine-tuning afterwards. It is verified against its own reference: the
masked dense model whose LayerNorms compute their statistics over the kept channels only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..graph.factors import FACTORS, factor_on, kept_indices
from ..graph.rules.norms import DenseLayerNorm, dense_layer_norm

__all__ = ["kept_layer_norm", "kept_statistics_reference", "to_native_layer_norm"]

_KEPT_SUFFIX = "_fxkept"


def to_native_layer_norm(root: nn.Module, graphs: list[fx.Graph]) -> int:
    """Replace every ``DenseLayerNorm`` module of ``root`` by a plain ``nn.LayerNorm`` (same
    parameters) and every ``dense_layer_norm`` call in ``graphs`` by ``F.layer_norm``; returns
    how many places changed."""
    changed = 0
    for m in root.modules():
        if type(m) is DenseLayerNorm:
            m.__class__ = nn.LayerNorm
            del m.dense_count
            changed += 1
    for graph in graphs:
        for n in graph.nodes:
            if n.op == "call_function" and n.target is dense_layer_norm:
                x, shape, weight, bias, eps = n.args[:5]
                n.target, n.args, n.kwargs = F.layer_norm, (x, shape, weight, bias, eps), {}
                n.meta.pop("is_wrapped", None)  # a torch function: no wrap() line in the generated code
                changed += 1
    return changed


def kept_layer_norm(x: torch.Tensor, kept: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                    eps: float) -> torch.Tensor:
    """LayerNorm over the last axis whose statistics use the ``kept`` (bool, last axis)
    channels only: what ``nn.LayerNorm(K)`` computes on them. The other channels come out as
    zero (the mask after the node zeroes them anyway)."""
    m = kept.to(x.dtype)
    count = m.sum()
    mean = (x * m).sum(-1, keepdim=True) / count
    centred = (x - mean) * m
    var = centred.square().sum(-1, keepdim=True) / count
    y = centred * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y * m


def _layer_norm_args(gm: fx.GraphModule, n: fx.Node) -> tuple | None:
    """(input, weight, bias, eps) of a LayerNorm node over the last axis alone, else None."""
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        if not isinstance(m, nn.LayerNorm) or len(m.normalized_shape) != 1:
            return None
        x = n.args[0] if n.args else n.kwargs["input"]
        return x, m.weight, m.bias, m.eps
    if n.op == "call_function" and n.target in (F.layer_norm, dense_layer_norm):
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        got = dict(zip(names, n.args)) | {k: v for k, v in n.kwargs.items() if k in names}
        shape = got.get("normalized_shape")
        if isinstance(shape, (tuple, list)) and len(shape) != 1:
            return None
        return got["input"], got.get("weight"), got.get("bias"), got.get("eps", 1e-5)
    return None


def kept_statistics_reference(masked: fx.GraphModule, id_kept: np.ndarray) -> int:
    """Rewrite ``masked`` (the masked dense model, a fresh copy from ``insert_masks``) in place
    so that each LayerNorm whose channels lose some computes its statistics over the kept ones
    (``kept_layer_norm``): the function of the native pruned model. Returns how many changed."""
    graph, changed = masked.graph, 0
    device = next((t.device for t in list(masked.parameters()) + list(masked.buffers())), torch.device("cpu"))
    for n in list(graph.nodes):
        got = _layer_norm_args(masked, n)
        factors = n.meta.get(FACTORS)
        if got is None or not isinstance(factors, tuple) or "tensor_meta" not in n.meta:
            continue
        last = len(n.meta["tensor_meta"].shape) - 1
        f = factor_on(factors, last)
        if f is None or f.axes != (last,):
            continue
        keep = np.asarray(kept_indices(f, last, id_kept), dtype=np.int64)
        if len(keep) == f.ids.shape[0]:
            continue
        mask = torch.zeros(f.ids.shape[0], dtype=torch.bool, device=device)
        mask[torch.as_tensor(keep, device=device)] = True
        name = f"{n.name}{_KEPT_SUFFIX}"
        masked.register_buffer(name, mask)
        x, weight, bias, eps = got
        with graph.inserting_before(n):
            kept = graph.get_attr(name)
            if n.op == "call_module":
                weight, bias = (graph.get_attr(f"{n.target}.{p}") if getattr(masked.get_submodule(n.target), p)
                                is not None else None for p in ("weight", "bias"))
            new = graph.call_function(kept_layer_norm, (x, kept, weight, bias, eps))
        new.meta = dict(n.meta)
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        changed += 1
    if changed:
        masked.recompile()
    return changed
