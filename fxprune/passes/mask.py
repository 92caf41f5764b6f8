"""The soft pass: multiply every tensor of a pruned class by a 0/1 mask.

The masked dense model is the reference the physical model must equal: zeroing a channel on
every tensor of its class is what removing it means. (Training-time methods use the same
placement with trainable gates.)
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import fx

from ..graph.factors import FACTORS

from ..capture.meta import node_shape, tensor_meta
from ..capture.copying import lookup_attr

__all__ = ["MASK_OF", "MASK_SUFFIX", "insert_masks", "mask_array"]

MASK_SUFFIX = "_fxmask"
MASK_OF = "fxprune.mask_of"  # meta on a mask multiply: the name of the node it masks


def mask_array(factors, shape, id_kept: np.ndarray) -> np.ndarray | None:
    """0/1 array broadcastable to ``shape`` that zeroes pruned channels (None: nothing pruned)."""
    mask = None
    for f in factors:
        keep = id_kept[f.ids]
        if keep.all():
            continue
        bshape = [1] * len(shape)
        for a in f.axes:
            bshape[a] = shape[a]
        m = keep.reshape(bshape)
        mask = m if mask is None else mask & m
    return mask


def insert_masks(gm: fx.GraphModule, id_kept: np.ndarray) -> fx.GraphModule:
    """A copy of the dense ``gm`` (sharing its modules) with a mask after every pruned tensor."""
    graph = fx.Graph()
    graph._codegen = copy.deepcopy(gm.graph._codegen)
    val_map: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, val_map))
    masks: dict[str, torch.Tensor] = {}
    for node in list(graph.nodes):
        if node.op in ("placeholder", "output"):
            continue
        factors, shape = node.meta.get(FACTORS), node_shape(node)
        if shape is None or not isinstance(factors, tuple):
            continue
        mask = mask_array(factors, shape, id_kept)
        if mask is None:
            continue
        dtype = tensor_meta(node).dtype
        name = f"{node.name}{MASK_SUFFIX}"
        # True where pruned. masked_fill, not a multiply: a pruned channel is 0 even where the dense
        # value is inf or nan (x / y with y's pruned channels zeroed is 0/0 there; the pruned model
        # has no such channel), and the result keeps the strides of the tensor it masks
        masks[name] = torch.as_tensor(~mask)
        with graph.inserting_after(node):
            get = graph.get_attr(name)
        with graph.inserting_after(get):
            masked = graph.call_method("masked_fill", (node, get, False if dtype == torch.bool else 0))
            masked.meta[MASK_OF] = node.name
        node.replace_all_uses_with(masked, delete_user_cb=lambda user: user is not masked)
    device = _device_of(gm)
    root = {}
    for n in graph.nodes:
        if n.op in ("call_module", "get_attr"):
            root[n.target] = masks[n.target].to(device) if n.target in masks else lookup_attr(gm, n.target)
    return fx.GraphModule(root, graph, type(gm).__name__)


def _device_of(gm: torch.nn.Module) -> torch.device:
    for t in list(gm.parameters()) + list(gm.buffers()):
        return t.device
    return torch.device("cpu")
