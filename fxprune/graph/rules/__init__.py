"""The op-rule registry. Importing this package registers every built-in rule."""

from . import aligned, contract, layers, norms, pointwise, shape, slicing, spatial  # noqa: F401  (registration side effects)
from .context import CostContext, RuleContext
from .registry import NO_MACS, REGISTRY, Example, OpRegistry, OpRule, register_rule

__all__ = ["NO_MACS", "REGISTRY", "CostContext", "Example", "OpRegistry", "OpRule", "RuleContext", "register_rule"]
