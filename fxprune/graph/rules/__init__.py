"""The op-rule registry. Importing this package registers every built-in rule."""

from . import aligned, contract, layers, pointwise, shape, spatial  # noqa: F401  (registration side effects)
from .registry import REGISTRY, OpRegistry, OpRule, register_rule

__all__ = ["REGISTRY", "OpRegistry", "OpRule", "register_rule"]
