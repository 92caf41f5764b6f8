"""Building module trees: assign/look up dotted attributes, copy a layer with new tensors."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["assign_attr", "clone_inputs", "copy_module", "deepcopy_module", "keep_rng", "lookup_attr",
           "private_runner", "reset_buffers"]


def assign_attr(root: nn.Module, target: str, value: Any) -> None:
    *path, leaf = target.split(".")
    mod = root
    for part in path:
        if not hasattr(mod, part):
            mod.add_module(part, nn.Module())
        mod = getattr(mod, part)
    if isinstance(value, nn.Module):
        mod.add_module(leaf, value)
    elif isinstance(value, nn.Parameter):
        mod.register_parameter(leaf, value)
    elif isinstance(value, torch.Tensor) and not hasattr(mod, leaf):
        mod.register_buffer(leaf, value)
    else:
        setattr(mod, leaf, value)


def lookup_attr(root: Any, target: str) -> Any:
    obj = root
    for part in target.split("."):
        obj = obj[part] if isinstance(obj, dict) and part in obj else getattr(obj, part)
    return obj


def copy_module(old: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """A copy of ``old`` whose tensors are the new ones in ``memo``. A leaf layer (no children,
    every tensor in the memo) is copied attribute by attribute, which is much cheaper than
    ``deepcopy``; anything else goes through ``deepcopy`` with the memo."""
    if isinstance(old, torch.jit.ScriptModule):
        return _copy_scripted(old)
    d = vars(old)
    tensors = list(d["_parameters"].values()) + list(d["_buffers"].values())
    if d["_modules"] or any(t is not None and id(t) not in memo for t in tensors):
        return deepcopy_module(old, memo)
    new = object.__new__(type(old))
    for k, v in d.items():
        if k == "_parameters" or k == "_buffers":
            v = {name: (None if t is None else memo[id(t)]) for name, t in v.items()}
        elif isinstance(v, torch.Tensor):  # a computed tensor attribute (legacy weight_norm's `weight`)
            v = v.detach().clone()
        elif isinstance(v, (dict, list, set)):
            v = v.copy()
        elif not isinstance(v, (int, float, str, bool, tuple, type(None), torch.dtype, torch.device)):
            v = copy.deepcopy(v)
        object.__setattr__(new, k, v)
    return new


def deepcopy_module(module: nn.Module, memo: dict[int, Any] | None = None) -> nn.Module:
    """``copy.deepcopy`` that also copies modules deepcopy refuses: the computed ``weight`` that
    the legacy ``torch.nn.utils.weight_norm`` keeps as an attribute is not a leaf tensor, so it
    is pre-copied (detached) into the memo."""
    memo = {} if memo is None else memo
    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Tensor) and not v.is_leaf and id(v) not in memo:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(module, memo)


def _copy_scripted(old: nn.Module) -> nn.Module:
    """An independent copy of a ScriptModule. (Its deepcopy clones parameters with autograd
    history — non-leaf tensors an optimizer refuses — so copy without grad and restore the flags.)"""
    with torch.no_grad():
        new = copy.deepcopy(old)
    for (_, p), (_, q) in zip(old.named_parameters(), new.named_parameters()):
        q.requires_grad_(p.requires_grad)
    return new


def private_runner(gm: nn.Module, graph: "fx.Graph | None" = None) -> "fx.GraphModule":
    """A GraphModule that runs ``graph`` (default ``gm.graph``, copied) on the same parameters
    as ``gm`` but on private copies of every buffer and tensor attribute.

    Running a graph can write to the tensors it reads: a train-mode graph bakes
    ``F.batch_norm(..., training=True)`` (running statistics updated in place), a forward may
    count calls into a buffer. Everything fxprune executes while compiling (shape propagation,
    calibration, verification) goes through such a runner, so the caller's model is never written
    to, and every run starts from the same state. Parameters are shared (not copied): graphs do
    not write to them and criteria need their gradients' graph."""
    from torch import fx

    graph = gm.graph if graph is None else graph
    new = fx.Graph()
    new._codegen = copy.deepcopy(graph._codegen)
    val_map: dict[fx.Node, fx.Node] = {}
    new.output(new.graph_copy(graph, val_map))
    memo: dict[int, Any] = {}
    for p in gm.parameters():
        memo[id(p)] = p
    sources: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for b in gm.buffers():
            if id(b) not in memo:
                memo[id(b)] = b.clone()
                sources.append((memo[id(b)], b))
    root: dict[str, Any] = {}
    for n in new.nodes:
        if n.op == "call_module" and n.target not in root:
            root[n.target] = copy_module(lookup_attr(gm, n.target), memo)
        elif n.op == "get_attr" and n.target not in root:
            value = lookup_attr(gm, n.target)
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                with torch.no_grad():
                    memo[id(value)] = value.clone()
                sources.append((memo[id(value)], value))
            root[n.target] = memo.get(id(value), value) if isinstance(value, torch.Tensor) else value
    runner = fx.GraphModule(root, new, type(gm).__name__)
    runner.__dict__["_fxprune_sources"] = sources
    return runner


def reset_buffers(runner: nn.Module) -> None:
    """Give a ``private_runner`` its buffers' original values again (before another run)."""
    with torch.no_grad():
        for copy_, source in runner.__dict__.get("_fxprune_sources", ()):
            copy_.copy_(source)


def clone_inputs(inputs: Any) -> Any:
    """Fresh copies of every tensor in ``inputs`` (a forward may write to its inputs in place)."""
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, inputs)


def keep_rng(inputs: Any = ()):
    """Context: random ops inside draw from a fork of the RNG; the caller's stream is unchanged
    afterwards (CPU, and the CUDA devices ``inputs`` live on)."""
    from torch.utils._pytree import tree_leaves

    devices = sorted({t.device.index or 0 for t in tree_leaves(inputs)
                      if isinstance(t, torch.Tensor) and t.device.type == "cuda"})
    return torch.random.fork_rng(devices=devices)
