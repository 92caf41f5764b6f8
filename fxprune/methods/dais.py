"""DAIS — differentiable annealing indicator search.

Every prunable channel class (residual- and concat-coupled channels share one) gets an
indicator ``g = sigmoid(alpha / T)`` multiplied onto every tensor that holds it
(``RelaxedGatedModel``). The search alternates, every training step (first-order bi-level):

- the weights take a step on a training batch (the caller's optimizer; ``weight_parameters()``);
- the indicators take an Adam step on a held-out batch, minimising
  ``task loss + flops_weight * band(E[MACs]) + l1_weight * mean(g)``, where ``E[MACs]`` is the
  channel graph's cost model evaluated at the indicators (a conv costs kept-in x kept-out, so the
  expectation is exact for 0/1 indicators and differentiable in between) and
  ``band(r) = (relu(r - F) + relu((1 - band) F - r)) / F`` pushes the MACs ratio ``r`` into
  ``[(1 - band) F, F]`` from either side.

The temperature anneals geometrically from ``t_start`` to ``t_end`` over the search, so the
indicators become binary. ``binarize()`` keeps the classes with ``alpha > 0``; if the binary
network's MACs fall outside ``[(1 - tolerance) F, (1 + tolerance) F]`` it projects instead (the
classes ranked by ``alpha`` globally, selected by the planner's exact budget search) and records
that it did. ``finalize()`` returns the physically smaller model for fine-tuning.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlanError
from ..train.loop import recalibrate_bn
from .gates import GatedModel
from ..plan import Plan

__all__ = ["DAIS", "RelaxedGatedModel"]

log = logging.getLogger(__name__)


class RelaxedGatedModel(GatedModel):
    """A ``GatedModel`` whose gates are ``sigmoid(alpha / temperature)`` (pinned slots: 1) until
    ``relaxed`` is switched off, after which the ``mask`` buffer (0/1) applies."""

    def __init__(self, model: nn.Module, example_inputs: Any, *, alpha_init: float = 0.5,
                 leaf_modules: Sequence[type | str] = ()) -> None:
        super().__init__(model, example_inputs, leaf_modules=leaf_modules)
        self.alpha = nn.Parameter(torch.full((self.n_slots,), float(alpha_init)))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("relaxed", torch.tensor(True))

    def gate_vector(self) -> torch.Tensor:
        if not bool(self.relaxed):
            return self.mask
        g = torch.sigmoid(self.alpha / self.temperature)
        return torch.where(self.pinned, torch.ones_like(g), g)


class DAIS:
    """Differentiable annealing indicator search on a private copy of ``model`` (``self.model``).

    flops: fraction of the dense MACs to keep. val_data: the held-out batches (``(x, y)``) the
        indicators are trained on (cycled). search_epochs / steps_per_epoch: the length of the
        search (the annealing runs over ``search_epochs * steps_per_epoch`` indicator steps).
    alpha_lr: Adam's learning rate for the indicators (default ``max(0.05, 4 / steps)``).
    band: the regulariser's band below the target; tolerance: how far the binarised network may
        land from the target before ``binarize`` projects.
    """

    def __init__(self, model: nn.Module, example_inputs: Any, *, flops: float, val_data: Iterable[Any],
                 search_epochs: int, steps_per_epoch: int, t_start: float = 1.0, t_end: float = 0.01,
                 alpha_init: float = 0.5, alpha_lr: float | None = None, flops_weight: float = 5.0,
                 l1_weight: float = 0.001, band: float = 0.01, tolerance: float = 0.02,
                 loss_fn: Callable[[Any, Any], torch.Tensor] = F.cross_entropy,
                 leaf_modules: Sequence[type | str] = ()) -> None:
        Plan(flops=flops)  # validates the fraction
        if search_epochs < 1 or steps_per_epoch < 1:
            raise PlanError(f"DAIS needs search_epochs >= 1 and steps_per_epoch >= 1, got {search_epochs}, {steps_per_epoch}")
        if not 0 < t_end <= t_start:
            raise PlanError(f"temperatures must satisfy 0 < t_end <= t_start, got {t_start}, {t_end}")
        self.flops, self.band, self.tolerance = float(flops), float(band), float(tolerance)
        self.search_epochs, self.total_steps = int(search_epochs), int(search_epochs) * int(steps_per_epoch)
        self.t_start, self.t_end = float(t_start), float(t_end)
        self.flops_weight, self.l1_weight, self.loss_fn = float(flops_weight), float(l1_weight), loss_fn
        self.model = RelaxedGatedModel(model, example_inputs, alpha_init=alpha_init, leaf_modules=leaf_modules)
        if alpha_lr is None:  # Adam moves each alpha ~lr per step: let a short search still travel ~4 units
            alpha_lr = max(0.05, 4.0 / self.total_steps)
        self.alpha_optimizer = torch.optim.Adam([self.model.alpha], lr=alpha_lr)
        self._val = val_data
        self._val_iter = iter(())
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.binarized: dict[str, Any] | None = None
        self._set_temperature()

    # -- parameters -------------------------------------------------------------------------------
    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the indicators (give these to the weight optimizer)."""
        return [p for n, p in self.model.named_parameters() if n != "alpha"]

    @property
    def searching(self) -> bool:
        return bool(self.model.relaxed) and self.step < self.total_steps

    # -- the objective ----------------------------------------------------------------------------
    def macs_ratio_tensor(self) -> torch.Tensor:
        return self.model.expected_macs() / self.model.macs_model.dense

    def regulariser(self) -> torch.Tensor:
        r = self.macs_ratio_tensor()
        lo, hi = (1.0 - self.band) * self.flops, self.flops
        band = (F.relu(r - hi) + F.relu(lo - r)) / self.flops
        free = ~self.model.pinned
        l1 = self.model.gate_vector()[free].mean() if free.any() else r.new_zeros(())
        return self.flops_weight * band.to(torch.float32) + self.l1_weight * l1

    # -- hooks ------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, model: nn.Module | None = None) -> None:
        if epoch >= self.search_epochs and bool(self.model.relaxed):
            self.binarize()

    def after_step(self, model: nn.Module | None = None) -> None:
        """One indicator step on the next held-out batch (through ``model``, the module being
        trained — a DDP wrapper averages the indicator gradients across ranks), then anneal."""
        if not self.searching:
            return
        x, y = self._next_val()
        net = model if model is not None else self.model
        was = net.training
        net.train()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        task = self.loss_fn(net(x), y)
        loss = task + self.regulariser()
        loss.backward()
        self.alpha_optimizer.step()
        for p in self.weight_parameters():  # the weights' gradients of this step are not theirs
            p.grad = None
        net.train(was)
        self.step += 1
        self._set_temperature()
        if self.step % 10 == 0 or self.step == self.total_steps:
            entry = {"step": self.step, "temperature": float(self.model.temperature), "task": float(task.detach()),
                     "expected_macs_ratio": float(self.macs_ratio_tensor().detach()),
                     "open": float((self.model.alpha.detach()[~self.model.pinned] > 0).float().mean())}
            self.history.append(entry)
            log.info("dais step %d: %s", self.step, entry)

    # -- the end of the search --------------------------------------------------------------------
    @torch.no_grad()
    def binarize(self) -> dict[str, Any]:
        """Fix the gates to 0/1 (``alpha > 0``), projecting onto the budget only when the binary
        network misses it by more than ``tolerance``. Returns (and keeps) what happened."""
        g = self.model
        keep = (g.alpha > 0) | g.pinned
        for i in range(len(g.groups)):  # no group disappears: keep its best channel
            sl = g.group_slice(i)
            if not keep[sl].any():
                keep[sl.start + int(torch.argmax(g.alpha[sl]))] = True
        ratio = g.macs_ratio(keep.float())
        projected = not (1 - self.tolerance) * self.flops <= ratio <= (1 + self.tolerance) * self.flops
        if projected:
            alpha = g.alpha.detach().cpu().numpy().astype(np.float64)
            by_group = {grp.index: i for i, grp in enumerate(g.groups)}

            def by_alpha(scores: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
                return {gi: alpha[g.group_slice(by_group[gi])] for gi in scores}

            plan = Plan(flops=self.flops, criterion="l1", scope="global", max_sparsity=1.0)
            keep = g.slot_mask_of(g.resolution_from_plan(plan, adjust=by_alpha, comparable=True)) | g.pinned.cpu()
            warnings.warn(f"dais: the binarised indicators keep {100 * ratio:.2f}% of the MACs (target "
                          f"{100 * self.flops:.2f}%); projected onto the budget by ranking alpha globally", stacklevel=2)
        g.mask.copy_(keep.to(g.mask.dtype))
        g.relaxed.fill_(False)
        self.binarized = {"binary_macs_ratio": ratio, "projected": projected,
                          "macs_ratio": g.macs_ratio(g.mask), "temperature": float(g.temperature),
                          "kept": int(keep[~g.pinned].sum()), "prunable": int((~g.pinned).sum())}
        log.info("dais binarised: %s", self.binarized)
        return self.binarized

    def finalize(self, calibration_data: Iterable[Any] | None = None, **compile_kwargs: Any) -> nn.Module:
        """Binarise (if not yet) and return the physically smaller model. With
        ``calibration_data`` (training batches) its batch-norm statistics are re-estimated: those
        gathered during the search saw relaxed gates (on digits this alone took ResNet-20 from
        30% to 90% test accuracy before fine-tuning)."""
        if bool(self.model.relaxed):
            self.binarize()
        small = self.model.finalize(**compile_kwargs)
        if calibration_data is not None:


            recalibrate_bn(small, calibration_data)
        return small

    # -- internals --------------------------------------------------------------------------------
    def _set_temperature(self) -> None:
        frac = min(1.0, self.step / max(self.total_steps, 1))
        t = self.t_start * math.exp(frac * math.log(self.t_end / self.t_start))
        self.model.temperature.fill_(t)

    def _next_val(self) -> Any:
        try:
            return next(self._val_iter)
        except StopIteration:
            self._val_iter = iter(self._val)
            try:
                return next(self._val_iter)
            except StopIteration:
                raise PlanError("DAIS val_data yields no batches") from None
