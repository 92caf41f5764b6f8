"""Module surgery: the pruned model as the user's own model with smaller layers.

For a model captured from one run (``fxprune.capture.run``) the graph is valid only for the
example inputs, so it cannot be the pruned model. The rewrite pass still runs on it (it slices
every layer and fixes its attributes); then the user's module tree is copied with each rewritten
layer in place of the original, and the model keeps its Python ``forward``.

That is exact only where the forward's own code does not depend on a pruned width: the rewrite
pass reports every node whose *graph* it had to change (a ``view`` / ``split`` with the width as a
literal, a dense-count rewrite of a mean). ``pin_unrealisable`` keeps the groups reaching such a
node whole, before planning. ``verify_calls`` then checks, layer call by layer call, that the
pruned model equals the dense model with the pruned channels zeroed at every layer's inputs and
outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..capture.copying import clone_inputs, deepcopy_module, lookup_attr
from ..capture.meta import describe_target
from ..capture.trace import TracedModel, training_mode
from ..errors import VerificationError
from ..graph.channel_graph import ChannelGraph
from ..graph.factors import FACTORS, iter_factors, kept_indices
from ..graph.rules import REGISTRY, OpRegistry
from .mask import mask_array
from .rewrite import rewrite_pass
from .verify import _same_random_state, compare

__all__ = ["pin_unrealisable", "realise", "replaced", "substitute", "uncalled_parameters", "verify_calls"]

log = logging.getLogger(__name__)

REASON = ("the model's own forward computes with this width (a shape constant or a count between layers); "
          "its Python code is kept as written, so the group is kept whole")


def _probe(cg: ChannelGraph) -> np.ndarray:
    """One pruned class per group that has a prunable class and more than one class."""
    roots = [g.classes[~g.pinned][-1] for g in cg.groups() if g.prunable and g.size > 1]
    return np.asarray(roots, dtype=np.int64)


def _ids_at(node: fx.Node) -> np.ndarray:
    ids = [f.ids.ravel() for n in (node, *node.all_input_nodes) for f in iter_factors(n.meta.get(FACTORS))]
    return np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)


def pin_unrealisable(traced: TracedModel, cg: ChannelGraph, registry: OpRegistry = REGISTRY,
                     rounds: int = 4) -> list[str]:
    """Pin every group whose pruning would change a node of the forward's own code (see the
    module docstring); returns those nodes' names. Probes by rewriting with one class removed
    from every group, until no node changes."""
    where: list[str] = []
    gm = traced.eval_gm
    for _ in range(rounds):
        probe = _probe(cg)
        if not probe.size:
            break
        changed: list[fx.Node] = []
        rewrite_pass(traced, cg, cg.id_kept(probe), registry, graph_changes=changed)
        if not changed:
            break
        roots, group_of = cg.roots, cg.group_of
        pinned_any = False
        for node in changed:
            ids = _ids_at(node)
            hit = np.unique(group_of[roots[ids]]) if ids.size else np.zeros(0, dtype=np.int64)
            hit = [g for g in hit[hit >= 0] if np.isin(cg.groups()[g].classes, probe).any()]
            for g in hit:
                group = cg.groups()[g]
                if group.prunable:
                    cg.pin(group.classes[~group.pinned], node, describe_target(gm, node), REASON)
                    pinned_any = True
            where.append(node.name)
        if not pinned_any:
            names = ", ".join(f"`{n.name}`" for n in changed[:5])
            raise VerificationError(f"pruning changes the model's own forward at {names}, which the pruned model "
                                    "(the model's own code) cannot follow; prune it with capture='fx' or 'export'")
    return sorted(set(where))


def uncalled_parameters(model: nn.Module, gm: fx.GraphModule) -> list[str]:
    """Parameters of ``model`` the recorded run never read (layers on a path it did not take)."""
    modules, tensors = replaced(model, gm)
    seen = {id(p) for m in modules for p in model.get_submodule(m).parameters()}
    seen |= {id(lookup_attr(model, t)) for t in tensors}
    return [n for n, p in model.named_parameters() if id(p) not in seen]


def realise(model: nn.Module, small: fx.GraphModule, modules: list[str], tensors: list[str]) -> nn.Module:
    """A copy of ``model`` whose layers at ``modules`` and tensors at ``tensors`` (``replaced``)
    are ``small``'s rewritten ones (tied tensors stay tied). The caller's model is not modified."""
    return substitute(model, {m: small.get_submodule(m) for m in modules},
                      {t: lookup_attr(small, t) for t in tensors})


def replaced(model: nn.Module, gm: fx.GraphModule) -> tuple[list[str], list[str]]:
    """The layers ``gm`` calls and the model tensors it reads, in graph order: what surgery replaces."""
    modules: dict[str, None] = {}
    tensors: dict[str, None] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            modules[node.target] = None
        elif node.op == "get_attr" and node.target not in tensors:
            try:
                value = lookup_attr(model, node.target)
            except AttributeError:
                continue  # a constant made in forward: the forward makes it again
            if isinstance(value, torch.Tensor):
                tensors[node.target] = None
    return list(modules), list(tensors)


def substitute(model: nn.Module, modules: dict[str, nn.Module], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` with the submodules and tensors at the given paths replaced by
    the given ones (a memo for deepcopy: whatever shared one of them shares its replacement)."""
    memo: dict[int, Any] = {id(model.get_submodule(k)): v for k, v in modules.items()}
    memo.update({id(lookup_attr(model, k)): v for k, v in tensors.items()})
    out = deepcopy_module(model, memo)
    out.training = model.training
    return out


# ---- verification, layer call by layer call --------------------------------------------------------
def _mask(value: Any, tree: Any, id_kept: np.ndarray) -> Any:
    if isinstance(value, torch.Tensor) and isinstance(tree, tuple):
        keep = mask_array(tree, tuple(value.shape), id_kept)
        if keep is None:
            return value
        fill = False if value.dtype == torch.bool else 0
        return value.masked_fill(torch.as_tensor(~keep, device=value.device), fill)
    if isinstance(value, (tuple, list)) and isinstance(tree, list) and len(tree) == len(value):
        items = [_mask(v, t, id_kept) for v, t in zip(value, tree)]
        return type(value)(items) if type(value) in (tuple, list) else type(value)(*items)
    if isinstance(value, dict) and isinstance(tree, dict):
        return type(value)({k: _mask(v, tree.get(k), id_kept) for k, v in value.items()})
    return value


def _arg_trees(args: Any) -> Any:
    """The factor trees of a call's arguments, in the structure of the arguments."""
    if isinstance(args, fx.Node):
        return args.meta.get(FACTORS)
    if isinstance(args, (tuple, list)):
        return [_arg_trees(a) for a in args]
    if isinstance(args, dict):
        return {k: _arg_trees(v) for k, v in args.items()}
    return None


def _kept(value: Any, tree: Any, id_kept: np.ndarray) -> list[torch.Tensor]:
    """The tensors of a dense output restricted to the kept channels, flattened."""
    if isinstance(value, torch.Tensor):
        if isinstance(tree, tuple):
            for f in tree:
                for a in f.axes:
                    value = value.index_select(a, torch.as_tensor(kept_indices(f, a, id_kept), device=value.device))
        return [value]
    if isinstance(value, (tuple, list)):
        trees = tree if isinstance(tree, list) and len(tree) == len(value) else [None] * len(value)
        return [x for v, t in zip(value, trees) for x in _kept(v, t, id_kept)]
    if isinstance(value, dict):
        trees = tree if isinstance(tree, dict) else {}
        return [x for k, v in value.items() for x in _kept(v, trees.get(k), id_kept)]
    return []


class _Calls:
    """Hooks on the layers the graph calls: per call, optionally mask the inputs and output with
    the call node's factors, and keep a copy of the output."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule, id_kept: np.ndarray | None) -> None:
        self.nodes: dict[str, list[fx.Node]] = {}
        for n in gm.graph.nodes:
            if n.op == "call_module":
                self.nodes.setdefault(n.target, []).append(n)
        self.model, self.id_kept = model, id_kept
        self.outputs: list[tuple[fx.Node, Any]] = []
        self.count: dict[str, int] = {}
        self.unexpected: list[str] = []

    def _node(self, target: str, advance: bool) -> fx.Node | None:
        """The graph node of ``target``'s current call (``advance``: and count the call)."""
        k, calls = self.count.get(target, 0), self.nodes[target]
        if advance:
            self.count[target] = k + 1
        return calls[k] if k < len(calls) else None

    def __enter__(self) -> "_Calls":
        self.handles = []
        for target in self.nodes:
            mod = self.model.get_submodule(target)

            def pre(m: nn.Module, args: Any, kwargs: Any, target: str = target) -> Any:
                node = self._node(target, advance=False)
                if node is None or self.id_kept is None:
                    return None
                return (_mask(tuple(args), _arg_trees(list(node.args)), self.id_kept),
                        _mask(dict(kwargs), _arg_trees(dict(node.kwargs)), self.id_kept))

            def post(m: nn.Module, args: Any, kwargs: Any, out: Any, target: str = target) -> Any:
                node = self._node(target, advance=True)
                if node is None:
                    self.unexpected.append(target)
                    return None
                if self.id_kept is not None:
                    out = _mask(out, node.meta.get(FACTORS), self.id_kept)
                self.outputs.append((node, torch.utils._pytree.tree_map(
                    lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v, out)))
                return out if self.id_kept is not None else None

            self.handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            self.handles.append(mod.register_forward_hook(post, with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()


def _run(model: nn.Module, gm: fx.GraphModule, inputs: Sequence[Any], id_kept: np.ndarray | None) -> tuple[Any, _Calls]:
    calls = _Calls(model, gm, id_kept)
    with calls, torch.no_grad(), training_mode(model, False), _same_random_state():
        out = model(*clone_inputs(inputs))
    return out, calls


def verify_calls(model: nn.Module, pruned: nn.Module, traced: TracedModel, id_kept: np.ndarray,
                 inputs: Sequence[Any], *, atol: float, rtol: float,
                 extra_inputs: Sequence[Any] | None = None) -> tuple[float, float, list[str]]:
    """Check ``pruned`` (a ``realise`` d model) against ``model`` with the pruned channels zeroed
    at the inputs and outputs of every layer call, on ``inputs`` and then ``extra_inputs``: each
    call's output, restricted to the kept channels, within ``atol + rtol * max|ref|``. Returns
    (max error, max |ref|, notes on the final outputs)."""
    gm = traced.eval_gm
    err = scale = 0.0
    notes: list[str] = []
    for which, xs in (("example input", inputs), ("seeded random input", extra_inputs)):
        if xs is None:
            continue
        try:
            ref_out, ref = _run(model, gm, xs, id_kept)
        except Exception as exc:  # noqa: BLE001 - the dense model rejects noise input: skipped
            if which == "example input":
                raise
            log.info("verification on a random input skipped: the dense model fails on it: %s", exc)
            continue
        out, mine = _run(pruned, gm, xs, None)
        for calls, who in ((ref, "masked dense"), (mine, "pruned")):
            if calls.unexpected or any(calls.count.get(t, 0) != len(ns) for t, ns in calls.nodes.items()):
                raise VerificationError(f"the {who} model calls its layers in another order or number than the "
                                        f"recorded run ({which}); the recorded graph does not describe it")
        for (node, r), (node2, m) in zip(ref.outputs, mine.outputs):
            rs, ms = _kept(r, node.meta.get(FACTORS), id_kept), _kept(m, None, id_kept)
            if len(rs) != len(ms) or any(a.shape != b.shape for a, b in zip(rs, ms)):
                raise VerificationError(f"layer call `{node.name}` ({node.target}) returns other shapes in the pruned "
                                        "model than the masked dense one", node=node.name)
            e, s = compare(ms, rs)
            if e > atol + rtol * s:
                raise VerificationError(
                    f"the pruned model differs from the masked dense model at layer call `{node.name}` "
                    f"({node.target}) by {e:.3g} (max |ref| {s:.3g}, {which}); its channel rule is wrong for this "
                    "use: mark that layer in Plan(ignore=[...]) or report the op.", node=node.name, max_abs_error=e)
            err, scale = max(err, e), max(scale, s)
        try:
            e, s = compare(out, ref_out)
        except VerificationError as exc:
            notes.append(f"final outputs on the {which}: {exc}")
        else:
            if e > atol + rtol * s:
                notes.append(f"final outputs on the {which} differ by {e:.3g} (max |ref| {s:.3g}) while every layer "
                             "call agrees: the forward selects by value (top-k, NMS) among near-equal scores")
    return err, scale, notes
