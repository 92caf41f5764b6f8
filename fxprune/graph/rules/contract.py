"""Contractions: matmul / bmm / einsum / addmm and scaled-dot-product attention.

Operands are described with einsum labels. Channels on a contracted label must be removed from
both operands together (a zeroed position contributes nothing to the sum), so their factors are
unioned; channels on kept labels flow to the output. This is what lets attention products
(``q @ k.transpose(-2, -1)``, ``attn @ v``) be pruned through.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from .context import CostContext, RuleContext, tensor_label
from ..factors import Factor, Factors, factor_on
from .pointwise import union_aligned
from .registry import Example, rand, register_rule

__all__ = ["Operand", "addmm", "contract", "einsum", "matmul", "matmul_labels", "parse_einsum", "sdpa"]


class Operand:
    """A tensor that is no node of the graph but takes part in a contraction: the attention
    weights inside scaled-dot-product attention, grouped-query keys repeated to every head."""

    def __init__(self, shape: Sequence[int], factors: Factors):
        self.shape, self.factors = tuple(shape), tuple(factors)


def _shape(ctx: RuleContext, x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Operand) else ctx.shape(x)


def _factors(ctx: RuleContext, x: Any) -> Factors:
    return x.factors if isinstance(x, Operand) else ctx.factors(x)


def contract(ctx: RuleContext, operands: Sequence[tuple[Any, Sequence[str]]], out_labels: Sequence[str],
             what: str, pinned_labels: Sequence[str] = ()) -> Factors:
    """Channel factors of a contraction of ``operands`` (each with one einsum label per axis).

    A factor over labels that all flow to the output passes; one over contracted labels only
    unions the operands' factors (a removed position contributes nothing); one over both kinds
    (heads x head_dim, contracted over head_dim) is made constant along the contracted labels when
    the channel graph prunes whole heads (``ChannelGraph.attention == "heads"``: the kept labels
    carry the head's class out), or along the kept labels otherwise (the same head dims in every
    head). A factor over a subset of another's labels that all flow out (the heads of attention
    weights against v's heads x head_dim) is unioned into it. An operand without a factor on a
    label of size > 1 fixes that label: a factor that has other labels is made constant along it,
    a factor on fixed labels only is pinned."""
    sizes: dict[str, int] = {}
    for x, labels in operands:
        for lab, s in zip(labels, _shape(ctx, x)):
            sizes[lab] = max(sizes.get(lab, 1), s)
    # every factor, re-expressed over sorted labels
    by_set: dict[tuple[str, ...], list[tuple[int, np.ndarray]]] = {}
    for i, (x, labels) in enumerate(operands):
        diagonal = len(set(labels)) != len(labels)
        for f in _factors(ctx, x):
            labs = [labels[a] for a in f.axes]
            if diagonal or any(lab in pinned_labels for lab in labs):
                ctx.pin(f.ids, f"{what}: channels on a mixed or repeated axis")
                continue
            order = np.argsort(labs)
            key = tuple(labs[k] for k in order)
            by_set.setdefault(key, []).append((i, np.transpose(f.ids, order)))
    merged = _merge_subsets(ctx, by_set, sizes, out_labels)
    _merge_contracted_subsets(ctx, by_set, sizes, out_labels, merged, what)
    keys = list(by_set)
    overlapping = {a for a in keys for b in keys if a != b and set(a) & set(b)}
    out: list[Factor] = []
    for key, entries in by_set.items():
        if key in overlapping:
            for _, ids in entries:
                ctx.pin(ids, f"{what}: channel factors of the operands overlap")
            continue
        want = tuple(sizes[lab] for lab in key)
        full = [(i, ids) for i, ids in entries if ids.shape == want]
        for i, ids in entries:
            if ids.shape != want:
                ctx.pin(ids, f"{what}: a broadcast channel cannot be removed")
        if not full:
            continue
        rep = full[0][1]
        for _, ids in full[1:]:
            ctx.union(rep, ids)
        have = {i for i, _ in full} | merged.get(key, set())
        fixed: set[int] = set()
        for i, (x, labels) in enumerate(operands):
            if i in have:
                continue
            shape = dict(zip(labels, _shape(ctx, x)))
            fixed |= {k for k, lab in enumerate(key) if shape.get(lab, 1) > 1}
        if len(fixed) == len(key):
            ctx.pin(rep, f"{what}: meets an operand that carries no channels on this axis")
            continue
        ctx.constant_along(rep, sorted(fixed))
        kept = [k for k, lab in enumerate(key) if lab in out_labels]
        if len(kept) == len(key):
            axes = [list(out_labels).index(lab) for lab in key]
            order = np.argsort(axes)
            out.append(Factor(tuple(axes[k] for k in order), np.transpose(rep, order)))
        elif kept:
            contracted = [k for k in range(len(key)) if k not in kept]
            if ctx.cg.attention == "heads":
                ctx.constant_along(rep, contracted)
                ids = rep[tuple(slice(None) if k in kept else 0 for k in range(len(key)))]
                axes = [list(out_labels).index(key[k]) for k in kept]
                order = np.argsort(axes)
                out.append(Factor(tuple(axes[k] for k in order), np.ascontiguousarray(np.transpose(ids, order))))
            else:
                ctx.constant_along(rep, kept)
    return tuple(sorted(out, key=lambda f: f.axes))


def _merge_subsets(ctx: RuleContext, by_set: dict[tuple[str, ...], list[tuple[int, np.ndarray]]],
                   sizes: dict[str, int], out_labels: Sequence[str]) -> dict[tuple[str, ...], set[int]]:
    """Union a factor over output labels that are a proper subset of one other factor's labels
    into that factor, broadcast over the labels it lacks. Returns, per receiving factor, the
    operands merged into it."""
    merged: dict[tuple[str, ...], set[int]] = {}
    for small in sorted(by_set, key=len):
        if small not in by_set or not all(lab in out_labels for lab in small):
            continue
        bigger = [b for b in by_set if b != small and set(small) < set(b)]
        if len(bigger) != 1:
            continue
        big = bigger[0]
        want = tuple(sizes[lab] for lab in big)
        reps = [ids for _, ids in by_set[big] if ids.shape == want]
        if not reps:
            continue
        # both keys are sorted label tuples, so small's axes already come in big's order
        view = [sizes[lab] if lab in small else 1 for lab in big]
        for i, ids in by_set[small]:
            if ids.shape != tuple(sizes[lab] for lab in small):
                ctx.pin(ids, "a broadcast channel cannot be removed")
                continue
            ctx.union(reps[0], np.broadcast_to(ids.reshape(view), want))
            merged.setdefault(big, set()).add(i)
        del by_set[small]
    return merged


def _merge_contracted_subsets(ctx: RuleContext, by_set: dict[tuple[str, ...], list[tuple[int, np.ndarray]]],
                              sizes: dict[str, int], out_labels: Sequence[str],
                              merged: dict[tuple[str, ...], set[int]], what: str) -> None:
    """A factor over contracted labels only that are a proper subset of one other factor's
    labels, which also has kept ones: the head dims of a key that every query head shares
    (multi-query attention: one kv head, broadcast). Whole-head pruning keeps those dims, so it is
    pinned (and the query heads stay free); by head dims it is unioned into the bigger factor,
    broadcast over its other labels (a dim goes in every head and in the key together)."""
    for small in sorted(by_set, key=len):
        if small not in by_set or any(lab in out_labels for lab in small):
            continue
        bigger = [b for b in by_set if b != small and set(small) < set(b)]
        if len(bigger) != 1 or not any(lab in out_labels for lab in bigger[0]):
            continue
        big = bigger[0]
        want = tuple(sizes[lab] for lab in big)
        reps = [ids for _, ids in by_set[big] if ids.shape == want]
        if not reps:
            continue
        for i, ids in by_set.pop(small):
            if ctx.cg.attention == "heads" or ids.shape != tuple(sizes[lab] for lab in small):
                ctx.pin(ids, f"{what}: dims of a key shared by every head, which whole-head pruning keeps"
                        if ctx.cg.attention == "heads" else "a broadcast channel cannot be removed")
                continue
            view = [sizes[lab] if lab in small else 1 for lab in big]
            ctx.union(reps[0], np.broadcast_to(ids.reshape(view), want))
            merged.setdefault(big, set()).add(i)


def _batch_labels(n: int) -> list[str]:
    return [f"b{k}" for k in range(n)]


def matmul_labels(na: int, nb: int) -> tuple[list[str], list[str], list[str]]:
    nbatch = max(na - 2, nb - 2, 0)
    batch = _batch_labels(nbatch)
    a = ["k"] if na == 1 else batch[nbatch - (na - 2):] + ["i", "k"]
    b = ["k"] if nb == 1 else batch[nbatch - (nb - 2):] + ["k", "j"]
    out = batch + (["i"] if na > 1 else []) + (["j"] if nb > 1 else [])
    return a, b, out


@register_rule(functions=[torch.matmul, operator.matmul, torch.bmm, torch.mm], methods=["matmul", "bmm", "mm"],
               example=lambda g: [Example(torch.matmul, (rand(g, 2, 6, 5), rand(g, 2, 5, 4))),
                                  Example(torch.mm, (rand(g, 4, 6), rand(g, 6, 3))),
                                  Example(torch.bmm, (rand(g, 2, 3, 6), rand(g, 2, 6, 4)), channel_axis=2)])
def matmul(ctx: RuleContext) -> Factors:
    a, b = ctx.node.args[0], ctx.node.args[1] if len(ctx.node.args) > 1 else ctx.node.kwargs["other"]
    la, lb, lo = matmul_labels(len(ctx.shape(a)), len(ctx.shape(b)))
    _weight_columns(ctx, b)
    return contract(ctx, [(a, la), (b, lb)], lo, "matmul")


def _weight_columns(ctx: RuleContext, b: Any) -> None:
    """``x @ W`` with ``W`` a parameter (HuggingFace's ``Conv1D``: ``addmm(bias, x, W)``): the
    columns of ``W`` are output channels a plan may remove, like a linear layer's rows."""
    if not isinstance(b, fx.Node) or b.op != "get_attr" or not ctx.shape(b) or len(ctx.shape(b)) < 2:
        return
    last = len(ctx.shape(b)) - 1
    f = factor_on(ctx.factors(b), last)
    if f is not None and f.axes == (last,):
        ctx.cg.mark_producer(f"{tensor_label(b)}@{last}", f.ids)


@register_rule(functions=[torch.addmm, torch.baddbmm, torch.addbmm], methods=["addmm", "baddbmm"],
               example=lambda g: [Example(torch.addmm, (rand(g, 3), rand(g, 4, 6), rand(g, 6, 3)), channels=(1,)),
                                  Example(torch.baddbmm, (rand(g, 2, 4, 3), rand(g, 2, 4, 6), rand(g, 2, 6, 3)),
                                          channels=(1,), channel_axis=2),
                                  Example(torch.addbmm, (rand(g, 4, 3), rand(g, 2, 4, 6), rand(g, 2, 6, 3)),
                                          channels=(1,), channel_axis=2,
                                          reference=lambda c, a, b: c + torch.bmm(a, b).sum(0))])
def addmm(ctx: RuleContext) -> Factors:
    bias, a, b = ctx.node.args[:3]
    la, lb, lo = matmul_labels(len(ctx.shape(a)), len(ctx.shape(b)))
    _weight_columns(ctx, b)
    if ctx.node.target is torch.addbmm:
        la, lb, lo = ["b", "i", "k"], ["b", "k", "j"], ["i", "j"]
    prod = contract(ctx, [(a, la), (b, lb)], lo, "addmm")
    out_shape = ctx.out_shape
    present = [(out_shape, list(prod))]
    s = ctx.shape(bias)
    if s is not None:
        off = len(out_shape) - len(s)
        present.append(((1,) * off + s, [f.with_axes([x + off for x in f.axes]) for f in ctx.factors(bias)]))
    return union_aligned(ctx, present, out_shape, "addmm bias")


def _distinct(c: CostContext, out: list[np.ndarray], more: list[np.ndarray]) -> list[np.ndarray]:
    """``out`` plus the arrays of ``more`` whose classes the output does not carry already: the
    contracted head dims of ``q @ k^T`` are the output's heads when whole heads are pruned, and
    their kept fraction must count once."""
    roots = set().union(*(c.roots(a) for a in out)) if out else set()
    return out + [ids for ids in more if not c.roots(ids) & roots]


@matmul.cost_formula
def _matmul_macs(c: CostContext):
    a = c.arg(0, "input")
    return [(math.prod(c.out_shape) * c.shape(a)[-1], _distinct(c, c.ids(), c.axis_ids(a, -1)))]


@addmm.cost_formula
def _addmm_macs(c: CostContext):
    a = c.arg(1, "mat1")
    contracted = c.axis_ids(a, -1)
    base = math.prod(c.out_shape) * c.shape(a)[-1]
    if c.node.target is torch.addbmm:  # the batch axis is summed over too
        base *= c.shape(a)[0]
        contracted += c.axis_ids(a, 0)
    return [(base, _distinct(c, c.ids(), contracted))]


def parse_einsum(equation: str, ndims: Sequence[int]) -> tuple[list[list[str]], list[str]]:
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    specs = lhs.split(",")
    ell_n = 0
    labels = []
    for spec, nd in zip(specs, ndims):
        if "..." in spec:
            pre, post = spec.split("...")
            n = nd - len(pre) - len(post)
            ell_n = max(ell_n, n)
            labels.append(list(pre) + [f"e{ell_n - n + k}" for k in range(n)] + list(post))
        else:
            labels.append(list(spec))
    ell = [f"e{k}" for k in range(ell_n)]
    if "->" in eq:
        if "..." in rhs:
            pre, post = rhs.split("...")
            out = list(pre) + ell + list(post)
        else:
            out = list(rhs)
    else:
        counts: dict[str, int] = {}
        for ls in labels:
            for lab in ls:
                counts[lab] = counts.get(lab, 0) + 1
        out = ell + sorted(lab for lab, c in counts.items() if c == 1 and not lab.startswith("e"))
    return labels, out


@register_rule(functions=[torch.einsum], example=lambda g: [
    Example(lambda a, b: torch.einsum("bij,bjk->bik", a, b), (rand(g, 2, 6, 5), rand(g, 2, 5, 4))),
    Example(lambda a, b: torch.einsum("bchw,bc->bhw", a, b), (rand(g, 2, 6, 3, 3), rand(g, 2, 6)), channels=(0,),
            out_axis=1)])
def einsum(ctx: RuleContext) -> Factors:
    equation = ctx.node.args[0]
    ops = ctx.node.args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = ops[0]
    labels, out = parse_einsum(equation, [len(ctx.shape(x)) for x in ops])
    return contract(ctx, list(zip(ops, labels)), out, f"einsum {equation!r}")


@register_rule(functions=[F.scaled_dot_product_attention], example=lambda g: Example(
    F.scaled_dot_product_attention, (rand(g, 2, 2, 5, 6), rand(g, 2, 2, 4, 6), rand(g, 2, 2, 4, 6)),
    channels=(0, 1, 2), channel_axis=3, out_axis=3,
    reference=lambda q, k, v, scale=None: torch.softmax(
        q @ k.transpose(-1, -2) * (scale or 1 / math.sqrt(q.shape[-1])), -1) @ v))
def sdpa(ctx: RuleContext) -> Any:
    """softmax(q k^T * scale + mask) v, two contractions: the head dim of q/k is contracted (the
    scores carry the head's class when whole heads are pruned), v's head dim flows out; the
    key/sequence axis is mixed by the softmax. With ``enable_gqa`` each key/value head serves a
    group of query heads: its ids are repeated over the group, so a group goes with its kv head."""
    q, k, v = (ctx.arg(i, n) for i, n in enumerate(("query", "key", "value")))
    qs = ctx.shape(q)
    batch = _batch_labels(len(qs) - 2)
    if ctx.arg(7, "enable_gqa", False):
        k, v = _repeat_heads(ctx, k, qs), _repeat_heads(ctx, v, qs)
        if k is None or v is None:
            return ctx.barrier("grouped-query attention whose query heads are no multiple of the key/value heads")

    def labels(x: Any, last: list[str]) -> list[str]:
        return batch[len(batch) - (len(_shape(ctx, x)) - 2):] + last

    scores_shape = (*qs[:-1], _shape(ctx, k)[-2])
    scores = contract(ctx, [(q, labels(q, ["L", "E"])), (k, labels(k, ["S", "E"]))], batch + ["L", "S"],
                      "attention scores", pinned_labels=("S",))
    mask = ctx.arg(3, "attn_mask", None)
    if isinstance(mask, fx.Node) and ctx.shape(mask) is not None:
        present = [(scores_shape, list(scores))]
        ms = ctx.shape(mask)
        off = len(scores_shape) - len(ms)
        present.append(((1,) * off + ms, [f.with_axes([a + off for a in f.axes]) for f in ctx.factors(mask)]))
        scores = union_aligned(ctx, present, scores_shape, "attention mask")
    weights = Operand(scores_shape, tuple(f for f in scores if set(f.axes) <= set(range(len(batch)))))
    for f in scores:
        if f not in weights.factors:
            ctx.pin(f.ids, "attention: channels on the query or key position axis")
    head = len(batch) - 1
    if ctx.cg.attention == "heads" and batch and any(head in f.axes for f in weights.factors):
        # one value head shared by every query head (multi-query): the output is heads x v's dims,
        # a product no single channel class can describe; whole-head pruning keeps v's dims
        vs, vf = _shape(ctx, v), _factors(ctx, v)
        off = len(batch) - (len(vs) - 2)
        shared = [f for f in vf if head - off not in f.axes]
        if shared and not any(head - off in f.axes for f in vf):
            for f in shared:
                ctx.pin(f.ids, "attention: dims of a value head shared by every query head, which whole-head "
                        "pruning keeps")
            v = Operand(vs, ())
    return contract(ctx, [(weights, batch + ["L", "S"]), (v, labels(v, ["S", "V"]))], batch + ["L", "V"],
                    "attention values", pinned_labels=("S",))


def _repeat_heads(ctx: RuleContext, x: Any, q_shape: Sequence[int]) -> Operand | None:
    """``x`` (..., Hkv, S, E) as the (..., H, S, E) tensor grouped-query attention reads."""
    s = ctx.shape(x)
    axis = len(s) - 3
    if axis < 0 or len(q_shape) != len(s) or q_shape[axis] % s[axis]:
        return None
    g = q_shape[axis] // s[axis]
    if s[axis] == 1 and not any(axis in f.axes for f in ctx.factors(x)):
        return Operand(s, ctx.factors(x))  # one kv head (multi-query): broadcast to every head, fixes none
    shape = (*s[:axis], q_shape[axis], *s[axis + 1:])
    out = []
    for f in ctx.factors(x):
        if axis in f.axes:
            out.append(Factor(f.axes, np.repeat(f.ids, g, axis=f.axes.index(axis))))
        else:
            out.append(f)
    return Operand(shape, out)


@einsum.cost_formula
def _einsum_macs(c: CostContext):
    """Two operands: the product of every label's size; the cost scales with the output's channel
    axes and the contracted channels (read off the first operand). Other arities are measured."""
    ops = c.node.args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = ops[0]
    if len(ops) != 2:
        return None
    shapes = [c.shape(x) for x in ops]
    labels, _ = parse_einsum(c.node.args[0], [len(s) for s in shapes])
    sizes: dict[str, int] = {}
    for ls, s in zip(labels, shapes):
        for lab, n in zip(ls, s):
            sizes[lab] = max(sizes.get(lab, 1), n)
    axes = c.ids()
    out_roots = set().union(*(c.roots(a) for a in axes)) if axes else set()
    axes += [ids for ids in c.ids(ops[0]) if not c.roots(ids) & out_roots]
    return [(math.prod(sizes.values()), axes)]


@sdpa.cost_formula
def _sdpa_macs(c: CostContext):
    """q k^T scales with q's channels (its heads and head dim); softmax(.) v with the output's
    (the query heads and v's dims). Not with v's own channels: under grouped-query attention a
    kept key/value head serves every query head of its group, and pruning query heads alone
    shrinks the second product too."""
    q, k, v = (c.arg(i, n) for i, n in enumerate(("query", "key", "value")))
    qs, ks, vs = c.shape(q), c.shape(k), c.shape(v)
    batch = math.prod(qs[:-2])
    return [(batch * qs[-2] * ks[-2] * qs[-1], c.ids(q)), (batch * qs[-2] * ks[-2] * vs[-1], c.ids())]


@sdpa.rewriter
def _rewrite_sdpa(r) -> None:
    """Removing head-dim channels must not change the default scale 1/sqrt(E)."""
    q = r.old.args[0] if r.old.args else r.old.kwargs["query"]
    scale = r.old.args[6] if len(r.old.args) > 6 else r.old.kwargs.get("scale")
    dense_e = r.dense_shape(q)[-1]
    if scale is None and r.kept_shape(q)[-1] != dense_e:
        r.new.kwargs = {**r.new.kwargs, "scale": 1.0 / math.sqrt(dense_e)}
