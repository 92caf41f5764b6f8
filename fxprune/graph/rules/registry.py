"""One registry from op to channel rule, looked up the way ``torch.fx.Interpreter`` dispatches:
by module type for ``call_module``, by function for ``call_function``, by name for
``call_method``.

A rule says how channel ids flow through the op (``propagate``), which shape constants in its
arguments change when channels go (``rewrite``), and how to fix a module's attributes after its
parameters were sliced (``update_module``). An op without a rule is a barrier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import fx, nn


@dataclass
class OpRule:
    name: str
    propagate: Callable[[Any], Any]
    rewrite: Callable[[Any], None] | None = None
    update_module: Callable[[nn.Module, nn.Module], None] | None = None

    def rewriter(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Decorator: rewrite the shape constants of a node in the pruned graph."""
        self.rewrite = fn
        return fn

    def module_updater(self, fn: Callable[[nn.Module, nn.Module], None]) -> Callable:
        """Decorator: ``fn(new_module, old_module)`` fixes attributes after slicing."""
        self.update_module = fn
        return fn


class OpRegistry:
    def __init__(self) -> None:
        self.modules: dict[type, OpRule] = {}
        self.functions: dict[Any, OpRule] = {}
        self.methods: dict[str, OpRule] = {}

    def register(self, rule: OpRule, *, modules: Iterable[type] = (), functions: Iterable[Any] = (),
                 methods: Iterable[str] = ()) -> OpRule:
        for m in modules:
            self.modules[m] = rule
        for f in functions:
            self.functions[f] = rule
        for name in methods:
            self.methods[name] = rule
        return rule

    def rule(self, *, modules: Iterable[type] = (), functions: Iterable[Any] = (),
             methods: Iterable[str] = ()) -> Callable[[Callable], OpRule]:
        """Decorator registering ``propagate(ctx) -> factors`` under the given keys."""

        def deco(fn: Callable) -> OpRule:
            return self.register(OpRule(fn.__name__, fn), modules=modules, functions=functions, methods=methods)

        return deco

    def module_rule(self, module: nn.Module) -> OpRule | None:
        """Rule for a module: its exact type, or a registered base class whose ``forward`` the
        subclass does not override (a subclass with its own forward computes something else)."""
        cls = type(module)
        if cls in self.modules:
            return self.modules[cls]
        for base in cls.__mro__[1:]:
            if base in self.modules and cls.forward is base.forward:
                return self.modules[base]
        return None

    def lookup(self, gm: fx.GraphModule, node: fx.Node) -> OpRule | None:
        if node.op == "call_module":
            from ..channels import submodule

            return self.module_rule(submodule(gm, node.target))
        if node.op == "call_function":
            try:
                rule = self.functions.get(node.target)
            except TypeError:  # unhashable target
                return None
            if rule is None and isinstance(node.target, type) and issubclass(node.target, tuple):
                return self.functions.get(tuple)  # a namedtuple built from outputs
            return rule
        if node.op == "call_method":
            return self.methods.get(node.target)
        return None


REGISTRY = OpRegistry()
register_rule = REGISTRY.rule
