"""fxprune: a graph-compiler channel-pruning pass for PyTorch, built on torch.fx.

    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    fxprune.report(small); fxprune.save(small, "m.fxp"); fxprune.load("m.fxp")

The names below are loaded on first use (``import fxprune`` itself imports nothing heavy, so the
command line starts at once); ``from fxprune import compile`` works as usual.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from .errors import (BenchmarkError, CheckpointError, ExportError, FxPruneError, ModelError, PlanError, ResolutionError,  # light
                     SerializationError, TraceError, VerificationError)
from .report import Report, report, resolution_of  # light; and ``fxprune.report`` is the function, not the module

__version__ = "0.1.0"
logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "analyse": "compiler", "compile": "compiler", "resolve": "compiler",
    "CRITERIA": "criteria", "ScoringContext": "criteria", "register_criterion": "criteria",
    "REGISTRY": "graph.rules", "register_rule": "graph.rules",
    "prune_checkpoint": "checkpoint",
    "PrunedGraphModule": "module", "load": "module", "save": "module",
    "Plan": "plan", "Resolution": "plan",
}
_EAGER = ["BenchmarkError", "CheckpointError", "ExportError", "FxPruneError", "ModelError", "PlanError", "ResolutionError",
          "SerializationError", "TraceError", "VerificationError", "Report", "report", "resolution_of"]
_SUBPACKAGES = ("bench", "export", "methods")

__all__ = sorted(_EAGER + list(_EXPORTS)) + list(_SUBPACKAGES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'fxprune' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
