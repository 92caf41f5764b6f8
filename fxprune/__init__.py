"""fxprune: a graph-compiler channel-pruning pass for PyTorch, built on torch.fx.

    small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(x,))
    fxprune.report(small); fxprune.save(small, "m.fxp"); fxprune.load("m.fxp")
"""

from __future__ import annotations

import logging

from .compiler import analyse, compile, resolve
from .criteria import CRITERIA, ScoringContext, register_criterion
from .errors import (BenchmarkError, ExportError, FxPruneError, ModelError, PlanError, ResolutionError,
                     SerializationError, TraceError, VerificationError)
from .graph.rules import REGISTRY, register_rule
from .module import PrunedGraphModule, load, save
from .plan import Plan, Resolution
from .report import Report, report, resolution_of

from . import bench, export, methods  # noqa: E402  (subpackages: fxprune.export.export_onnx, ...)

__version__ = "0.1.0"
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BenchmarkError", "CRITERIA", "ExportError", "FxPruneError", "ModelError", "Plan", "PlanError", "PrunedGraphModule", "REGISTRY", "Report",
    "Resolution", "ResolutionError", "ScoringContext", "SerializationError", "TraceError", "VerificationError",
    "analyse", "compile", "load", "register_criterion", "register_rule", "report", "resolution_of", "resolve", "save", "bench",
    "export", "methods",
]
