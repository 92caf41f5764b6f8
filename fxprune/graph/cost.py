"""Analytic multiply-accumulate count read off a traced graph.

Counts what ``torch.utils.flop_counter.FlopCounterMode`` counts (convolutions, matmuls,
attention; FLOPs = 2 x MACs) from node shapes alone, so the pruned model's cost is known without
running it: pass the pruned shapes and the pruned modules. Tested against FlopCounterMode.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata
from torch.utils.flop_counter import FlopCounterMode

from .channels import node_shape, submodule
from .copying import deepcopy_module
from .rules.aligned import ChannelAligned
from .rules.contract import parse_einsum

Shape = tuple[int, ...]


def _prod(xs: Any) -> int:
    return int(math.prod(xs))


def count_macs(gm: fx.GraphModule, shape_of: Callable[[Any], Shape | None] = node_shape,
               module_of: Callable[[str], nn.Module] | None = None) -> int:
    """MACs of one forward over the graph of ``gm``. ``shape_of`` gives a node's output shape
    (default: the shape-propagated one); ``module_of`` resolves call_module targets.

    Ops without a formula and without a channel rule (wrapped functions, custom leaves) are run
    once on meta tensors of the right shapes under FlopCounterMode."""
    from .rules import REGISTRY

    module_of = module_of or (lambda target: submodule(gm, target))
    total = 0
    for node in gm.graph.nodes:
        n = node_macs(node, shape_of, module_of)
        if n == 0 and node.op in ("call_function", "call_method", "call_module") and \
                REGISTRY.lookup(gm, node) is None:
            n = _measured_macs(node, shape_of, module_of)
        total += n
    return total


def _measured_macs(node: fx.Node, shape_of: Callable[[Any], Shape | None],
                   module_of: Callable[[str], nn.Module]) -> int:
    class _Unknown(Exception):
        pass

    def meta(a: fx.Node) -> Any:
        tm = a.meta.get("tensor_meta")
        if not isinstance(tm, TensorMetadata):
            raise _Unknown
        return torch.empty(shape_of(a), dtype=tm.dtype, device="meta")

    try:
        args, kwargs = fx.node.map_arg(node.args, meta), fx.node.map_arg(node.kwargs, meta)
        if node.op == "call_module":
            fn = deepcopy_module(module_of(node.target)).to("meta")
        elif node.op == "call_method":
            fn = lambda self, *a, **k: getattr(self, node.target)(*a, **k)  # noqa: E731
        else:
            fn = node.target
        with FlopCounterMode(display=False) as counter:
            fn(*args, **kwargs)
        return counter.get_total_flops() // 2
    except Exception:  # an op that cannot run on meta tensors: not counted
        return 0


def _arg(node: fx.Node, i: int, name: str, default: Any = None) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def node_macs(node: fx.Node, shape_of: Callable[[Any], Shape | None], module_of: Callable[[str], nn.Module]) -> int:
    out = shape_of(node)
    if node.op == "call_module":
        m = module_of(node.target)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return _prod(out) * (m.in_channels // m.groups) * _prod(m.kernel_size)
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            return _prod(shape_of(node.args[0])) * (m.out_channels // m.groups) * _prod(m.kernel_size)
        if isinstance(m, nn.Linear):
            return _prod(out) * m.in_features
        if isinstance(m, nn.MultiheadAttention):
            return _mha_macs(m, [shape_of(a) for a in node.args[:3]])
        if isinstance(m, ChannelAligned):
            shapes = [shape_of(a) for a in node.args if isinstance(a, fx.Node)]
            return int(sum(base for base, _ in m.macs_terms(shapes)))
        return 0
    if node.op not in ("call_function", "call_method") or out is None:
        return 0
    t = node.target
    if t in (torch.matmul, operator.matmul, torch.bmm, torch.mm, "matmul", "bmm", "mm"):
        a = shape_of(node.args[0])
        return _prod(out) * a[-1]
    if t in (torch.addmm, torch.baddbmm, "addmm", "baddbmm"):
        a = shape_of(node.args[1])
        return _prod(out) * a[-1]
    if t is F.linear:
        return _prod(out) * shape_of(node.args[0])[-1]
    if t in (F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d):
        w = shape_of(_arg(node, 1, "weight"))
        return _prod(out) * _prod(w[1:])
    if t is F.scaled_dot_product_attention:
        q, k, v = (shape_of(_arg(node, i, n)) for i, n in enumerate(("query", "key", "value")))
        batch = _prod(q[:-2])
        return batch * q[-2] * k[-2] * q[-1] + batch * q[-2] * k[-2] * v[-1]
    if t is torch.einsum:
        ops = node.args[1:]
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = ops[0]
        if len(ops) != 2:
            return 0
        shapes = [shape_of(x) for x in ops]
        labels, _ = parse_einsum(node.args[0], [len(s) for s in shapes])
        sizes: dict[str, int] = {}
        for ls, s in zip(labels, shapes):
            for lab, n in zip(ls, s):
                sizes[lab] = max(sizes.get(lab, 1), n)
        return _prod(sizes.values())
    return 0


def _mha_macs(m: nn.MultiheadAttention, shapes: list[Shape | None]) -> int:
    q, k, v = shapes
    if m.batch_first:
        n, length, e = q[0], q[1], q[2]
        s = k[1]
    elif len(q) == 3:
        length, n, e = q
        s = k[0]
    else:
        length, e = q
        n, s = 1, k[0]
    proj = n * length * e * m.embed_dim + n * s * k[-1] * m.embed_dim + n * s * v[-1] * m.embed_dim
    attn = 2 * n * length * s * m.embed_dim
    return proj + attn + n * length * m.embed_dim * m.embed_dim


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
