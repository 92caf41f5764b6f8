"""A GraphModule that may carry a second, train-mode graph.

FX bakes ``self.training`` into a traced graph, so a model whose forward branches on it
(auxiliary heads, stochastic depth written in Python) needs both graphs to keep both
behaviours. ``forward`` dispatches on ``self.training``; both graphs share the same modules.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import fx, nn
from torch.fx.graph_module import _forward_from_src

from .copying import assign_attr, lookup_attr

__all__ = ["RESERVED_NAMES", "DualGraphModule"]

class DualGraphModule(fx.GraphModule):
    """``fx.GraphModule`` plus an optional ``train_graph`` used when ``self.training`` is True."""

    def __init__(self, root: nn.Module | dict[str, Any], graph: fx.Graph, train_graph: fx.Graph | None = None,
                 class_name: str = "PrunedModule") -> None:
        super().__init__(root, graph, class_name)
        if train_graph is not None:
            have = {n.target for n in graph.nodes if n.op in ("call_module", "get_attr")}
            for node in train_graph.nodes:
                if node.op in ("call_module", "get_attr") and node.target not in have:
                    value = root[node.target] if isinstance(root, dict) else lookup_attr(root, node.target)
                    assign_attr(self, node.target, value)
                    have.add(node.target)
        self.__dict__["_train_graph"] = train_graph
        if train_graph is not None:  # super().__init__ compiled the eval graph already
            self.recompile()

    @property
    def train_graph(self) -> fx.Graph | None:
        return self.__dict__.get("_train_graph")

    def recompile(self):  # type: ignore[override]
        code = super().recompile()
        cls = type(self)
        eval_forward = cls.forward
        train_graph = self.__dict__.get("_train_graph")
        if train_graph is None:
            cls.forward_eval = cls.forward_train = eval_forward
            return code
        tcode = train_graph.python_code(root_module="self")
        train_forward = _forward_from_src(tcode.src, tcode.globals, {})

        @functools.wraps(eval_forward)
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return (train_forward if self.training else eval_forward)(self, *args, **kwargs)

        cls.forward = forward
        cls.forward_eval, cls.forward_train = eval_forward, train_forward
        return code

    def _deepcopy_init(self):
        name = type(self).__name__

        def init(res: DualGraphModule, fake_mod: nn.Module, graph: fx.Graph) -> None:
            DualGraphModule.__init__(res, fake_mod, graph, fake_mod.__dict__.get("_train_graph"), name)

        return init


RESERVED_NAMES = frozenset({"meta", "graph", "code", "_code", "_graph", "_train_graph", "training", "_tracer_cls",
                            "_tracer_extras", "forward_eval", "forward_train", "fxprune_report"}
                           | {n for n in dir(DualGraphModule) if n not in dir(nn.Module)})
"""Attribute names a traced or compiled module uses for itself (the compiled ``PrunedGraphModule``
adds ``fxprune_report``): a model's own top-level child, parameter or buffer may not use them."""
