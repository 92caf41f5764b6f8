"""Zero-channel pruning (ArtNet's exact pruning): remove every channel whose activation is zero
wherever it is consumed, on every calibration input.

The ``zero_channel`` criterion gives each channel class its maximum |activation| at its sinks (the
inputs of the convs / linears that consume it) over the calibration data; classes scoring
``<= tolerance`` (default exactly 0) are removed, everything else is kept. With tolerance 0 the
pruned model computes the same function as the dense one on the calibration data (up to
floating-point summation order), and ``max_abs_error`` measures that on every calibration batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..criteria import ScoringContext, score_groups
from ..criteria.calibration import split_batch
from ..errors import PlanError
from .. import compiler
from ..plan import Resolution
from ..planner import resolution_from_keep
from ..report import report

__all__ = ["ZeroChannelResult", "zero_channel_prune"]

log = logging.getLogger(__name__)


@dataclass
class ZeroChannelResult:
    """The pruned model and what was removed where, with the measured deviation."""

    model: nn.Module
    resolution: Resolution
    layers: list[dict[str, Any]]          # per group: modules, channels, zero (removed)
    removed: int
    prunable: int
    max_abs_error: float                  # max |dense - pruned| over the calibration batches
    max_abs_output: float                 # max |dense| there (the scale of the error)
    batches: int
    macs_ratio: float
    params_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "prunable": self.prunable, "max_abs_error": self.max_abs_error,
                "max_abs_output": self.max_abs_output, "calibration_batches": self.batches,
                "macs_ratio": self.macs_ratio, "params_ratio": self.params_ratio, "layers": self.layers}


def _call(model: nn.Module, inputs: tuple[Any, ...]) -> torch.Tensor:
    out = model(*inputs)
    if not isinstance(out, torch.Tensor):
        raise PlanError("zero_channel_prune compares model outputs: the model must return one tensor")
    return out


@torch.no_grad()
def zero_channel_prune(model: nn.Module, calibration_data: Iterable[Any], example_inputs: Any = None, *,
                       tolerance: float = 0.0, verify: bool = True, **compile_kwargs: Any) -> ZeroChannelResult:
    """Remove the channels that are zero on all of ``calibration_data`` (batches as for
    ``fxprune.compile``: a tensor, a tuple of inputs, or ``(inputs, targets)``). The caller's
    model is not changed. ``example_inputs`` default to the first batch's inputs."""
    batches = list(calibration_data)
    if not batches:
        raise PlanError("zero_channel_prune needs at least one calibration batch")
    if tolerance < 0:
        raise PlanError(f"tolerance must be >= 0, got {tolerance}")
    if example_inputs is None:
        example_inputs = split_batch(batches[0])[0]
    trace_kwargs = {k: compile_kwargs[k] for k in ("leaf_modules", "concrete_args", "registry") if k in compile_kwargs}
    a = compiler.analyse(model, example_inputs, **trace_kwargs)
    active = [g for g in a.cg.groups() if not g.pinned.all()]
    ctx = ScoringContext(a.cg, parameters=a.parameters, model=model, data=batches, gm=a.traced.eval_gm)
    scores = score_groups("zero_channel", active, ctx)
    keep = {g.index: scores[g.index] > tolerance for g in active}  # an all-zero layer keeps one channel
    res = resolution_from_keep(a.cg, active, keep, scores)
    small = compiler.compile(model, resolution=res, verify=verify, analysis=a, **compile_kwargs)
    layers = [{"group": g.key, "modules": g.producer_modules, "channels": g.size,
               "zero": g.size - len(keep[g.index]),
               "max_activation_kept_min": float(scores[g.index][keep[g.index]].min())} for g in active]
    err = ref = 0.0
    was = model.training
    model.eval()
    try:
        for b in batches:
            inputs = split_batch(b)[0]
            dense, pruned = _call(model, inputs), _call(small, inputs)
            err = max(err, float((dense - pruned).abs().max()))
            ref = max(ref, float(dense.abs().max()))
    finally:
        model.train(was)
    r = report(small)
    removed, prunable = sum(l["zero"] for l in layers), sum(g.size for g in active)
    log.info("zero-channel pruning: %d of %d prunable channels are zero on %d calibration batches; "
             "max |dense - pruned| = %.3g", removed, prunable, len(batches), err)
    return ZeroChannelResult(small, res, layers, removed, prunable, err, ref, len(batches),
                             r.macs_after / r.macs_before, r.params_after / r.params_before)
