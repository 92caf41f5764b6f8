"""Slicing ops: split / chunk / unbind, indexing (``x[...]``, narrow, select, index_select) and
tuple outputs. A slice of a channel axis keeps a run of channels (its bounds are recounted); an
integer or list index on a channel axis pins (keeps) what it reads and is renumbered; see
``index_factors`` for advanced indices.
"""

from __future__ import annotations

import collections
import operator
from typing import Any

import numpy as np
import torch
from torch import fx

from ...capture.meta import tensor_meta
from ..factors import FACTORS, Factor, factor_on
from .context import RuleContext
from .registry import NO_MACS, Example, rand, register_rule

__all__ = ["getitem", "index_factors", "index_select", "narrow", "select", "split", "tuple_construct", "unbind"]

_Pair = collections.namedtuple("_Pair", ["a", "b"])


def _swap_halves(x: Any) -> Any:
    a, b = x.split(3, 1)
    return torch.cat([b, a], 1)


def _uneven_chunks(x: Any) -> Any:
    a, b = x.chunk(2, 1)
    return torch.cat([a, b], 1)


def _unbind_sum(x: Any) -> Any:
    parts = x.unbind(2)
    return parts[0] + parts[1]


def _pair(x: Any) -> Any:
    return _Pair(x, x * 2)


# ---- split family -------------------------------------------------------------------------------------
@register_rule(methods=["split", "split_with_sizes", "chunk", "tensor_split"],
               functions=[torch.split, torch.chunk, torch.tensor_split, torch.split_with_sizes], cost=NO_MACS,
               example=lambda g: [Example(_swap_halves, (rand(g, 2, 6, 3, 3),)),
                                  Example(_uneven_chunks, (rand(g, 2, 7, 3, 3),))])
def split(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    shape = ctx.shape(x)
    dim = ctx.arg(2, "dim", 0) % len(shape)
    outs = tensor_meta(ctx.node)
    sizes = [int(m.shape[dim]) for m in outs]
    f = factor_on(ctx.factors(x), dim)
    others = tuple(g for g in ctx.factors(x) if g is not f)
    if f is not None and len(f.axes) > 1:
        ctx.pin(f.ids, "split along an axis of a multi-axis channel factor")
        f = None
    result, start = [], 0
    for size in sizes:
        part = others + ((Factor((dim,), f.ids[start:start + size]),) if f is not None and size else ())
        result.append(tuple(sorted(part, key=lambda g: g.axes)))
        start += size
    return result


@split.rewriter
def _rewrite_split(r) -> None:
    node = r.old
    outs = r.kept_tree(node)
    dense = r.dense_tree(node)
    if outs == dense:
        return
    dim = (node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)) % len(dense[0])
    sizes = [s[dim] for s in outs]
    name = node.target if node.op == "call_method" else node.target.__name__
    if name == "chunk":
        n = node.args[1] if len(node.args) > 1 else node.kwargs["chunks"]
        total = sum(sizes)
        step = -(-total // n)
        natural = [min(step, total - i * step) for i in range(n) if total - i * step > 0]
        if natural == sizes:
            return
    new = r.new
    if node.op == "call_method":
        new.target = "split"
    else:
        new.target = torch.split
    kwargs = {k: v for k, v in new.kwargs.items() if k not in ("dim", "chunks", "split_size_or_sections",
                                                                 "split_size", "split_sizes", "indices",
                                                                 "sections", "indices_or_sections")}
    new.args = (new.args[0], list(sizes), dim)
    new.kwargs = kwargs


@register_rule(methods=["unbind"], functions=[torch.unbind], cost=NO_MACS,
               example=lambda g: Example(_unbind_sum, (rand(g, 2, 6, 2, 4),)))
def unbind(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    dim = ctx.arg(1, "dim", 0) % len(ctx.shape(x))
    pieces: list[list[Factor]] = [[] for _ in tensor_meta(ctx.node)]
    for f in ctx.factors(x):
        axes = [a - (a > dim) for a in f.axes if a != dim]
        if dim not in f.axes:
            for p in pieces:
                p.append(f.with_axes(axes))
        elif len(f.axes) == 1:
            ctx.pin(f.ids, "unbind along a channel axis")
        else:  # q, k, v of a packed projection (3 x heads x head_dim): every piece keeps its slice
            k = f.axes.index(dim)
            ctx.constant_along(f.ids, [k])
            for i, p in enumerate(pieces):
                p.append(Factor(tuple(axes), np.ascontiguousarray(f.ids.take(i, axis=k))))
    return [tuple(p) for p in pieces]


# ---- indexing -------------------------------------------------------------------------------------------
def _is_scalar_node(i: Any) -> bool:
    return isinstance(i, fx.Node) and tensor_meta(i) is None


def _is_int_list(i: Any) -> bool:
    return isinstance(i, list) and len(i) > 0 and all(isinstance(v, int) and not isinstance(v, bool) for v in i)


def _advanced_rank(i: Any) -> int | None:
    """Output axes an advanced index entry produces: 1 for a list of ints, the index tensor's
    ndim for an integer tensor node; None when ``i`` is not an advanced index we follow (bool
    masks consume several axes, nested lists, tensor constants)."""
    if _is_int_list(i):
        return 1
    if isinstance(i, fx.Node):
        meta = tensor_meta(i)
        if meta is not None and not meta.dtype.is_floating_point and meta.dtype != torch.bool:
            return len(meta.shape)
    return None


def _is_advanced(i: Any) -> bool:
    return isinstance(i, list) or (isinstance(i, (fx.Node, torch.Tensor)) and not _is_scalar_node(i))


def _expand_index(idx: Any, nd: int) -> list[Any] | None:
    """The index as one entry per input axis (plus None entries), or None for indexing we do not
    follow: several advanced indices, or one combined with an integer (numpy moves the result
    axes then), boolean masks."""
    idx = list(idx) if isinstance(idx, tuple) else [idx]
    advanced = [i for i in idx if _is_advanced(i)]
    if advanced:
        if len(advanced) > 1 or _advanced_rank(advanced[0]) is None:
            return None
        if any(isinstance(i, int) or _is_scalar_node(i) for i in idx):
            return None
    consuming = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + [slice(None)] * (nd - consuming) + idx[k + 1:]
    else:
        idx = idx + [slice(None)] * (nd - consuming)
    return idx


def _norm_slice(s: slice, size: int) -> tuple[int, int, int] | None:
    if any(isinstance(v, fx.Node) for v in (s.start, s.stop, s.step)):
        return None
    return s.indices(size)


def index_factors(ctx: RuleContext, x: Any, idx: Any) -> Any:
    """Channels through ``x[idx]``: slices keep (or cut) an axis, an integer picks one channel
    (which must then be kept; the rewrite renumbers it), one advanced index (a list of ints or an
    integer index tensor) replaces its axis — channels on the other axes pass, a list on a channel
    axis keeps its members."""
    shape = ctx.shape(x)
    entries = _expand_index(idx, len(shape))
    if entries is None:
        return ctx.barrier("advanced indexing with several index tensors, masks, or mixed with integers")
    axis_map: dict[int, int] = {}
    selected: dict[int, Any] = {}
    sliced: dict[int, slice] = {}
    advanced: dict[int, Any] = {}
    i_in = i_out = 0
    for e in entries:
        if e is None:
            i_out += 1
        elif isinstance(e, slice):
            axis_map[i_in] = i_out
            if e != slice(None):
                sliced[i_in] = e
            i_in += 1
            i_out += 1
        elif _is_advanced(e):
            advanced[i_in] = e
            axis_map[i_in] = i_out
            i_in += 1
            i_out += _advanced_rank(e)
        else:  # int or scalar node
            selected[i_in] = e
            i_in += 1
    out = []
    for f in ctx.factors(x):
        sel = [a for a in f.axes if a in selected]
        if sel and len(f.axes) > len(sel) and all(isinstance(selected[a], int) for a in sel):
            # one part of a factor over several axes (q of packed q/k/v): the picked axes keep
            # every position, the piece passes the rest
            ks = [f.axes.index(a) for a in sel]
            ctx.constant_along(f.ids, ks)
            pick = tuple(selected[a] % shape[a] if a in selected else slice(None) for a in f.axes)
            rest = [a for a in f.axes if a not in selected]
            if any(a in advanced or a in sliced for a in rest):
                ctx.pin(f.ids, "indexing picks and slices the same channel factor")
                continue
            out.append(Factor(tuple(axis_map[a] for a in rest), np.ascontiguousarray(f.ids[pick])))
            continue
        if sel:
            if len(f.axes) == 1 and isinstance(selected[sel[0]], int):
                i = selected[sel[0]] % shape[sel[0]]
                ctx.pin(f.ids[i:i + 1], "indexing picks this channel")
            else:
                ctx.pin(f.ids, "indexing picks channels by a computed index")
            continue
        adv = [a for a in f.axes if a in advanced]
        if adv:
            e = advanced[adv[0]]
            if len(f.axes) == 1 and _is_int_list(e):
                picks = [i % shape[adv[0]] for i in e]
                ctx.pin(f.ids[picks], "a list index picks these channels")
                if len(set(picks)) == len(picks):
                    out.append(Factor((axis_map[adv[0]],), f.ids[picks]))
            else:
                ctx.pin(f.ids, "indexing picks channels by a computed index")
            continue
        cut = [a for a in f.axes if a in sliced]
        ids = f.ids
        if cut:
            norms = [_norm_slice(sliced[a], shape[a]) for a in cut]
            if any(n is None or n[2] != 1 for n in norms):
                ctx.pin(f.ids, "strided or computed slice of a channel axis")
                continue
            # ids are laid out one array axis per tensor axis of the factor (heads x head_dim
            # after a view): a slice of one of them cuts that array axis
            cuts = [slice(None)] * len(f.axes)
            for a, n in zip(cut, norms):
                cuts[f.axes.index(a)] = slice(n[0], n[1])
            ids = ids[tuple(cuts)]
        out.append(Factor(tuple(axis_map[a] for a in f.axes), ids))
    return tuple(out)


def _kept_along(r: Any, f: Factor, axis: int) -> np.ndarray:
    """Which positions of tensor axis ``axis`` are kept. For a factor over several axes (heads x
    head_dim after a view) that is the projection on this axis: a pruned tensor is a product of
    kept positions per axis, so any kept entry in a slice of the others marks the position kept."""
    keep = r.id_kept[f.ids]
    if keep.ndim > 1:
        keep = keep.any(axis=tuple(i for i in range(keep.ndim) if f.axes[i] != axis))
    return keep


def _renumber(keep: np.ndarray, i: int, size: int) -> int:
    """Position of dense channel ``i`` among the kept ones (it is kept: the rule pinned it)."""
    return int(keep[:i % size].sum())


@register_rule(functions=[tuple], cost=NO_MACS, example=lambda g: Example(_pair, (rand(g, 2, 6, 3),)))
def tuple_construct(ctx: RuleContext) -> Any:
    """``GoogLeNetOutputs(logits, aux2, aux1)``: a tuple whose items keep their channels; an
    output dataclass built from keywords (HuggingFace's ``ModelOutput``) keeps them by name."""
    if ctx.node.kwargs and not ctx.node.args:
        return {k: x.meta.get(FACTORS) if isinstance(x, fx.Node) else None for k, x in ctx.node.kwargs.items()}
    items = list(ctx.node.args) + list(ctx.node.kwargs.values())
    if len(items) == 1 and isinstance(items[0], (tuple, list)):
        items = list(items[0])
    return [x.meta.get(FACTORS) if isinstance(x, fx.Node) else None for x in items]


@register_rule(functions=[operator.getitem], cost=NO_MACS, example=lambda g: [
    Example(lambda x: x[:, 1:5], (rand(g, 2, 6, 3, 3),)), Example(lambda x: x[:, [0, 2, 3]], (rand(g, 2, 6, 3, 3),)),
    Example(lambda x: x[..., 1:], (rand(g, 2, 6, 3, 3),))])
def getitem(ctx: RuleContext) -> Any:
    src, idx = ctx.node.args
    tree = src.meta.get(FACTORS) if isinstance(src, fx.Node) else None
    if isinstance(tree, list):
        return tree[idx] if isinstance(idx, int) else (tree[idx] if isinstance(idx, slice) else None)
    if isinstance(tree, dict):
        return tree.get(idx)
    if ctx.shape(src) is None:
        return None  # indexing a shape, a list of sizes, ...
    return index_factors(ctx, src, idx)


@getitem.rewriter
def _rewrite_getitem(r) -> None:
    src, idx = r.old.args
    if not isinstance(src, fx.Node) or r.dense_shape(src) is None or isinstance(src.meta.get(FACTORS), list):
        return
    shape = r.dense_shape(src)
    entries = _expand_index(idx, len(shape))
    if entries is None:
        return
    idx = r.new.args[1]
    was_tuple = isinstance(idx, tuple)
    items = list(idx) if was_tuple else [idx]
    # map every slice in the original index to its input axis
    i_in, changed = 0, False
    positions = []
    for e in items:
        if e is Ellipsis:
            i_in += len(shape) - sum(1 for i in items if i is not None and i is not Ellipsis)
            positions.append(None)
        elif e is None:
            positions.append(None)
        else:
            positions.append(i_in)
            i_in += 1
    new_items = list(items)
    for k, (e, axis) in enumerate(zip(items, positions)):
        if axis is None or e == slice(None) or not isinstance(e, (slice, int, list)) or isinstance(e, bool):
            continue
        f = r.factor_on(src, axis)
        if f is None:
            continue
        keep = _kept_along(r, f, axis)
        if isinstance(e, int):
            new_items[k] = _renumber(keep, e, shape[axis])
            changed = True
            continue
        if isinstance(e, list):
            new_items[k] = [_renumber(keep, i, shape[axis]) for i in e]
            changed = True
            continue
        start, stop, _ = e.indices(shape[axis])
        new_start = int(keep[:start].sum())
        new_stop = int(keep[:stop].sum())
        new_items[k] = slice(None if e.start is None else new_start, None if e.stop is None else new_stop, e.step)
        changed = True
    if changed:
        r.new.args = (r.new.args[0], tuple(new_items) if was_tuple else new_items[0])


@register_rule(methods=["narrow"], functions=[torch.narrow], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.narrow(1, 1, 4), (rand(g, 2, 6, 3, 3),)))
def narrow(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    nd = len(ctx.shape(x))
    dim, start, length = ctx.arg(1, "dim") % nd, ctx.arg(2, "start"), ctx.arg(3, "length")
    stop = start + length if isinstance(start, int) and isinstance(length, int) else length
    return index_factors(ctx, x, tuple([slice(None)] * dim + [slice(start, stop)]))


@narrow.rewriter
def _rewrite_narrow(r) -> None:
    src = r.old.args[0]
    dim = r.old.args[1] % len(r.dense_shape(src))
    f = r.factor_on(src, dim)
    start, length = r.old.args[2], r.old.args[3]
    if f is None or not isinstance(start, int):
        return
    keep = _kept_along(r, f, dim)
    new_start = int(keep[:start].sum())
    new_len = int(keep[start:start + length].sum())
    r.new.args = (r.new.args[0], r.new.args[1], new_start, new_len)


@register_rule(methods=["select"], functions=[torch.select], cost=NO_MACS,
               example=lambda g: Example(lambda x: x.select(2, 0), (rand(g, 2, 6, 3, 4),)))
def select(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    nd = len(ctx.shape(x))
    dim, index = ctx.arg(1, "dim") % nd, ctx.arg(2, "index")
    return index_factors(ctx, x, tuple([slice(None)] * dim + [index]))


@select.rewriter
def _rewrite_select(r) -> None:
    src = r.old.args[0] if r.old.args else r.old.kwargs.get("input")
    shape = r.dense_shape(src)
    dim = r.old.args[1] if len(r.old.args) > 1 else r.old.kwargs.get("dim")
    index = r.old.args[2] if len(r.old.args) > 2 else r.old.kwargs.get("index")
    if shape is None or not isinstance(dim, int) or not isinstance(index, int):
        return
    dim %= len(shape)
    f = r.factor_on(src, dim)
    if f is None:
        return
    new = _renumber(_kept_along(r, f, dim), index, shape[dim])
    if len(r.new.args) > 2:
        r.new.args = (*r.new.args[:2], new, *r.new.args[3:])
    else:
        r.new.kwargs = {**r.new.kwargs, "index": new}


@register_rule(methods=["index_select"], functions=[torch.index_select], cost=NO_MACS, example=lambda g: Example(
    lambda x, i: x.index_select(2, i), (rand(g, 2, 6, 5), torch.tensor([0, 3, 4]))))
def index_select(ctx: RuleContext) -> Any:
    x = ctx.arg(0, "input")
    dim = ctx.arg(1, "dim") % len(ctx.shape(x))
    out = []
    for f in ctx.factors(x):
        if dim in f.axes:
            ctx.pin(f.ids, "index_select along a channel axis")
        else:
            out.append(f)
    return tuple(out)
