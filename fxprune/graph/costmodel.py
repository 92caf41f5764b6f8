"""MACs and parameter counts as functions of which channels are kept, read off the channel graph.

Every cost term of the network is ``base * prod_a fraction_a(keep)``: a conv's MACs are its dense
MACs times the kept fraction of each channel axis of its weight (output rows, input columns per
group; a depthwise conv has only its output axis), a matmul's are scaled by the kept fractions of
its output channel axes and of its contracted axis, a parameter's size by the kept fraction of
each of its channel axes. ``fraction_a`` is the mean of ``keep`` over the axis' channel ids, so
repeated ids (a flatten feeding a linear layer) weigh by how often they occur.

``keep`` is a vector over union-find ids (only class roots are read): 1.0 kept, 0.0 pruned, or
anything in between (the relaxed indicators of differentiable search). The model is exact for 0/1
vectors — tested against ``count_macs`` and ``count_params`` of the physically pruned model — and
multilinear, so its gradient is the cost a channel's removal saves at the current widths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import fx, nn

from ..capture.meta import node_shape, submodule
from .channel_graph import ChannelGraph
from .cost import measured_macs, node_cost_terms
from .rules import REGISTRY, OpRegistry

__all__ = ["CostModel", "macs_model", "params_model"]


class CostModel:
    """``constant + sum_t base_t * prod_{a in t} mean(keep[ids_a])``; with ``curves``, term ``t``
    is instead ``base_t * curve_t(prod ...)``, a piecewise-linear function given by its knots
    ``(fractions, values)`` (fractions ascending, from 0 to 1; the latency tables)."""

    def __init__(self, cg: ChannelGraph, terms: Iterable[tuple[float, Sequence[np.ndarray]]], constant: float,
                 name: str, curves: Sequence[tuple[np.ndarray, np.ndarray]] | None = None):
        self.name, self.n = name, cg.uf.n
        prunable = np.zeros(cg.uf.n, dtype=bool)
        for g in cg.groups():
            prunable[g.classes[~g.pinned]] = True
        roots = cg.roots
        axis_ids: list[np.ndarray] = []
        axis_index: dict[tuple[int, int], int] = {}  # (id of array, size) -> axis (shared arrays once)
        bases: list[float] = []
        rows: list[list[int]] = []
        kept_curves: list[tuple[np.ndarray, np.ndarray]] = []
        terms = list(terms)
        if curves is not None and len(curves) != len(terms):
            raise ValueError("one curve per term")
        for t, (base, axes) in enumerate(terms):
            if base == 0:
                continue
            row = []
            for ids in axes:
                r = roots[np.asarray(ids).ravel()]
                if not prunable[r].any():
                    continue  # this axis can never shrink
                key = (id(ids), r.size)
                if key not in axis_index:
                    axis_index[key] = len(axis_ids)
                    axis_ids.append(r)
                row.append(axis_index[key])
            if row:
                bases.append(float(base))
                rows.append(row)
                if curves is not None:
                    kept_curves.append(curves[t])
            else:
                constant += base * (float(curves[t][1][-1]) if curves is not None else 1.0)
        self.constant = float(constant)
        n_axes = len(axis_ids)
        width = max((len(r) for r in rows), default=1)
        table = np.full((len(rows), width), n_axes, dtype=np.int64)  # padding -> the constant axis
        for i, r in enumerate(rows):
            table[i, :len(r)] = r
        flat = np.concatenate(axis_ids) if axis_ids else np.zeros(0, dtype=np.int64)
        self._flat = torch.from_numpy(flat)
        self._seg = torch.from_numpy(np.repeat(np.arange(n_axes), [len(a) for a in axis_ids]))
        self._len = torch.tensor([len(a) for a in axis_ids] + [1], dtype=torch.float64)
        self._table = torch.from_numpy(table)
        self._base = torch.tensor(bases, dtype=torch.float64)
        self.n_axes = n_axes
        self._knots = self._values = None
        if curves is not None and kept_curves:
            k = max(len(f) for f, _ in kept_curves)
            pad = lambda a: np.concatenate([a, np.full(k - len(a), a[-1])])  # noqa: E731
            self._knots = torch.from_numpy(np.stack([pad(np.asarray(f, np.float64)) for f, _ in kept_curves]))
            self._values = torch.from_numpy(np.stack([pad(np.asarray(v, np.float64)) for _, v in kept_curves]))

    @property
    def dense(self) -> float:
        return float(self(torch.ones(self.n, dtype=torch.float64)))

    def __call__(self, keep: torch.Tensor) -> torch.Tensor:
        """Cost at ``keep`` (a tensor over ids; differentiable, any float dtype/device)."""
        dtype, dev = keep.dtype, keep.device
        sums = torch.zeros(self.n_axes, dtype=dtype, device=dev).index_add(0, self._seg.to(dev), keep[self._flat.to(dev)])
        frac = torch.cat([sums, sums.new_ones(1)]) / self._len.to(dev, dtype)  # last: the constant-one axis
        f = frac[self._table.to(dev)].prod(1)
        if self._knots is not None:
            f = _interpolate(f, self._knots.to(dev, dtype), self._values.to(dev, dtype))
        return self.constant + (self._base.to(dev, dtype) * f).sum()

    def evaluate(self, keep: np.ndarray) -> float:
        with torch.no_grad():
            return float(self(torch.as_tensor(keep, dtype=torch.float64)))

    def marginal(self, keep: np.ndarray) -> np.ndarray:
        """d cost / d keep at ``keep``: what removing each channel saves at the current widths."""
        with torch.enable_grad():  # also when called under no_grad (a training method's hook)
            k = torch.as_tensor(keep, dtype=torch.float64).clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(k), k)
        return grad.numpy()


def _interpolate(x: torch.Tensor, knots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Row-wise piecewise-linear interpolation of ``x[i]`` on ``(knots[i], values[i])``
    (differentiable in ``x``; flat outside the knots)."""
    k = knots.shape[1]
    x = x.clamp(0.0, 1.0)
    hi = torch.searchsorted(knots, x.detach().unsqueeze(1).contiguous()).clamp(1, k - 1)
    lo = hi - 1
    x0, x1 = knots.gather(1, lo).squeeze(1), knots.gather(1, hi).squeeze(1)
    y0, y1 = values.gather(1, lo).squeeze(1), values.gather(1, hi).squeeze(1)
    width = x1 - x0
    t = torch.where(width > 0, (x - x0) / torch.where(width > 0, width, torch.ones_like(width)), torch.ones_like(x))
    return y0 + t * (y1 - y0)


def macs_model(cg: ChannelGraph, gm: fx.GraphModule, registry: OpRegistry = REGISTRY) -> CostModel:
    """MACs of one forward of ``gm`` (the eval-mode graph) as a function of kept channels: the
    cost terms of every op rule's formula; ops without one are a measured, fixed cost."""
    terms: list[tuple[float, Sequence[np.ndarray]]] = []
    constant = 0.0
    module_of = lambda target: submodule(gm, target)  # noqa: E731
    for node in gm.graph.nodes:
        got = node_cost_terms(node, node_shape, module_of, cg, registry)
        if got is None:
            constant += measured_macs(node, node_shape, module_of)
        else:
            terms.extend(got)
    return CostModel(cg, terms, constant, "macs")


def params_model(cg: ChannelGraph, model: nn.Module) -> CostModel:
    """Parameter count of ``model`` as a function of kept channels (parameters outside the traced
    graphs are a constant)."""
    terms = []
    seen = 0
    for name, t in cg.tensors.items():
        if not isinstance(t, nn.Parameter):
            continue
        seen += t.numel()
        terms.append((t.numel(), [cg.param_axes[(name, a)] for a in range(t.ndim) if (name, a) in cg.param_axes]))
    total = sum(p.numel() for p in model.parameters())
    return CostModel(cg, terms, max(total - seen, 0), "params")
