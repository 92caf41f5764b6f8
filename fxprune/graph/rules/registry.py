"""One registry from op to ``OpRule``, looked up the way ``torch.fx.Interpreter`` dispatches: by
module type for ``call_module``, by function for ``call_function``, by name for ``call_method``.

An ``OpRule`` is everything fxprune knows about one op:

- ``propagate(ctx: RuleContext) -> factors``: how channel ids flow through it (an op without a
  rule is a barrier: every channel it touches is pinned);
- ``rewrite(r)``: the shape constants in its arguments that change when channels go;
- ``update_module(new, old)``: a module's attributes fixed after its parameters were sliced;
- ``cost(c: CostContext) -> [(macs, [channel-id arrays]), ...]``: its multiply-accumulates at the
  shapes ``c`` gives, as terms that each scale with the kept fraction of the listed channel axes.
  The exact count (reports, budgets on the pruned model) is the sum of the terms; the cost model
  over kept channels (budgets, CPMC, DAIS) reads the axes. ``NO_MACS`` declares an op free; a rule
  without a cost formula is counted by running the op once under ``FlopCounterMode`` on meta
  tensors (a fixed cost: its channels do not scale it), never as 0;
- ``example(gen) -> Example``: a small random instance, used by the registry-wide test that
  checks the cost formula against ``FlopCounterMode`` and the cost terms against compiled models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

__all__ = ["NO_MACS", "CostFn", "CostTerm", "Example", "OpRegistry", "OpRule", "REGISTRY", "WithParams", "rand",
           "register_rule"]

CostTerm = tuple[float, Sequence[np.ndarray]]
CostFn = Callable[[Any], Iterable[CostTerm]]


def NO_MACS(c: Any) -> list[CostTerm]:  # noqa: N802 - a constant-like cost formula
    """The cost formula of an op without multiply-accumulates (what FlopCounterMode counts as 0)."""
    return []


@dataclass
class Example:
    """A random instance of an op: ``fn`` (a module or a callable) applied to ``args``.

    The registry test feeds ``args[i]`` for ``i`` in ``channels`` from a prunable layer along
    ``channel_axis`` (a 1x1 conv on axis 1, a linear layer on the last axis) and the result
    (``out[pick]`` for a tuple) into one along ``out_axis``, so pruning flows through the op.
    ``reference`` computes the same result from ops FlopCounterMode counts, for an op it does not
    count itself (``torch.addbmm``, the CPU kernel of scaled-dot-product attention)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    channels: tuple[int, ...] = (0,)
    channel_axis: int = 1
    out_axis: int = 1
    pick: int | None = None  # the output to read when the op returns a tuple
    reference: Callable[..., Any] | None = None  # the same result from ops FlopCounterMode counts


def rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """A random tensor for an example."""
    return torch.randn(*shape, generator=gen)


class WithParams(nn.Module):
    """``fn(*inputs, *params)`` with ``params`` held as parameters: an example of a functional op
    whose weight is a parameter (``F.linear(x, self.weight)``). Parameters at the positions in
    ``frozen`` do not require gradients (running statistics)."""

    def __init__(self, fn: Callable[..., Any], *params: torch.Tensor, frozen: Sequence[int] = ()) -> None:
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList([nn.Parameter(p, requires_grad=i not in frozen) for i, p in enumerate(params)])

    def forward(self, *xs: Any) -> Any:
        return self.fn(*xs, *self.params)


@dataclass
class OpRule:
    name: str
    propagate: Callable[[Any], Any]
    rewrite: Callable[[Any], None] | None = None
    update_module: Callable[[nn.Module, nn.Module], None] | None = None
    cost: CostFn | None = None
    example: Callable[[torch.Generator], Example | Sequence[Example]] | None = None

    def rewriter(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Decorator: rewrite the shape constants of a node in the pruned graph."""
        self.rewrite = fn
        return fn

    def module_updater(self, fn: Callable[[nn.Module, nn.Module], None]) -> Callable:
        """Decorator: ``fn(new_module, old_module)`` fixes attributes after slicing."""
        self.update_module = fn
        return fn

    def cost_formula(self, fn: CostFn) -> CostFn:
        """Decorator: ``fn(c: CostContext)`` returns the op's MACs as ``(macs, [ids, ...])`` terms."""
        self.cost = fn
        return fn

    def example_of(self, fn: Callable[[torch.Generator], Example | Sequence[Example]]) -> Callable:
        """Decorator: ``fn(generator)`` returns random instances of the op."""
        self.example = fn
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

    def rule(self, *, modules: Iterable[type] = (), functions: Iterable[Any] = (), methods: Iterable[str] = (),
             cost: CostFn | None = None, rewrite: Callable[[Any], None] | None = None,
             update_module: Callable[[nn.Module, nn.Module], None] | None = None,
             example: Callable[[torch.Generator], Example | Sequence[Example]] | None = None,
             ) -> Callable[[Callable], OpRule]:
        """Decorator registering ``propagate(ctx) -> factors`` under the given keys, with the
        op's cost formula and, optionally, its rewriter, module updater and example: adding an op
        is this one call (``fxprune.register_rule``)::

            @fxprune.register_rule(functions=[torch.inner], example=lambda g: Example(
                torch.inner, (rand(g, 4, 6), rand(g, 5, 6)), channel_axis=1))
            def inner(ctx):               # RuleContext: how channel ids flow (here: a contraction)
                a, b = ctx.arg(0, "input"), ctx.arg(1, "other")
                return contract(ctx, [(a, ["i", "k"]), (b, ["j", "k"])], ["i", "j"], "inner")

            @inner.cost_formula
            def _(c):                     # CostContext: MACs at c's shapes, and the channel axes they scale with
                a = c.arg(0, "input")
                return [(math.prod(c.out_shape) * c.shape(a)[-1], c.ids() + c.axis_ids(a, -1))]

        ``cost=NO_MACS`` declares an op free; without a formula the op is counted by
        FlopCounterMode on meta tensors (a fixed cost)."""

        def deco(fn: Callable) -> OpRule:
            return self.register(OpRule(fn.__name__, fn, rewrite, update_module, cost, example),
                                 modules=modules, functions=functions, methods=methods)

        return deco

    def rules(self) -> list[OpRule]:
        """Every registered rule once, in registration order."""
        seen: dict[int, OpRule] = {}
        for table in (self.modules, self.functions, self.methods):
            for r in table.values():
                seen.setdefault(id(r), r)
        return list(seen.values())

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

    def lookup(self, node: fx.Node, module_of: Callable[[str], nn.Module]) -> OpRule | None:
        """The rule of ``node``; ``module_of`` resolves call_module targets."""
        if node.op == "call_module":
            return self.module_rule(module_of(node.target))
        if node.op == "call_function":
            try:
                rule = self.functions.get(node.target)
            except TypeError:  # unhashable target
                return None
            if rule is None and isinstance(node.target, type) and issubclass(node.target, (tuple, dict)):
                return self.functions.get(tuple)  # a namedtuple or output dataclass built from outputs
            return rule
        if node.op == "call_method":
            return self.methods.get(node.target)
        return None


REGISTRY = OpRegistry()
register_rule = REGISTRY.rule
