"""Errors that fxprune raises. Each names the node / module / layer involved and what to do."""

from __future__ import annotations

__all__ = ["BenchmarkError", "CheckpointError", "ExportError", "FxPruneError", "ModelError", "PlanError", "ResolutionError",
           "SerializationError", "TraceError", "VerificationError"]


class FxPruneError(Exception):
    """Base class of every error fxprune raises on purpose."""


class TraceError(FxPruneError):
    """The model could not be traced or shape-propagated into an FX graph."""


class PlanError(FxPruneError, ValueError):
    """A Plan, or a name inside it, is invalid for this model."""


class ResolutionError(FxPruneError, ValueError):
    """A saved Resolution does not match the model it is applied to."""


class VerificationError(FxPruneError):
    """The pruned model differs from the masked dense model beyond tolerance."""

    def __init__(self, message: str, *, node: str | None = None, max_abs_error: float | None = None):
        super().__init__(message)
        self.node = node
        self.max_abs_error = max_abs_error


class ModelError(FxPruneError, ValueError):
    """The model itself is unusable for pruning (e.g. non-finite weights)."""


class SerializationError(FxPruneError):
    """A .fxp file cannot be written or read (or reading it would need trust)."""


class ExportError(FxPruneError):
    """ONNX export / TensorRT engine building failed or is unavailable (names what is missing)."""


class BenchmarkError(FxPruneError):
    """A latency benchmark could not run (a backend missing, a bad option)."""


class CheckpointError(FxPruneError, ValueError):
    """A checkpoint directory (safetensors shards) cannot be read, does not fit the model, or
    cannot hold the pruned model (names the file / tensor / config field)."""
