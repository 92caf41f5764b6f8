"""GHFP — gradually hard filter pruning, with soft (SFP) and hard (HFP) filter pruning as its two ends.

Every epoch ``t`` the method

1. sets the budget of the epoch: with progress ``p = min(1, (t + 1) / R)`` over ``R`` ramp
   epochs, the pruned fraction of the target goes as ``rate(p)`` (cubic by default:
   ``1 - (1 - p)^3``), so a MACs target ``F`` gives ``1 - (1 - F) rate(p)`` for the epoch (a
   sparsity target ``S`` gives ``S rate(p)``);
2. ranks channels with the criterion (l2 by default) on the current weights and selects the
   lowest to meet that budget (the planner's budget search; channels already hard are ranked
   last and always stay selected);
3. makes a fraction ``lambda(p)`` of the selected channels of every group *hard* — the hard set
   only grows, lowest-scoring first: their gate becomes 0 (the forward is exactly the hard-pruned
   model), every weight that holds them (filter rows, norm entries, consumer columns) is zeroed
   and so are their gradients (``before_step``) and optimizer state; they never change again;
4. makes the rest *soft*: their filter rows (the producing layers' output rows and bias) are
   multiplied by ``alpha(p) = soft_decay (1 - p)`` (0 by default: zeroed, as in SFP) and keep
   training; a soft channel that is not selected next epoch simply comes back.

``hardness`` picks ``lambda``: ``"soft"`` (always 0: SFP), ``"hard"`` (always 1: HFP),
``"linear"`` (``p``: GHFP, the default) or ``"cubic"`` (``1 - (1 - p)^3``). ``finalize`` makes
every selected channel hard and rewrites the trained copy into the physically smaller model.

The method is trainer-agnostic: call ``on_epoch_start(epoch)`` before each epoch,
``before_step()`` between ``backward`` and ``optimizer.step()``, and ``after_step()`` after it
(``fxprune.train.fit(..., callbacks=[method])`` does). Under DDP the selection is broadcast from
rank 0, so every rank applies the same masks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PlanError
from .gates import GatedModel
from ..plan import Plan
from ..train.distributed import broadcast_
from .common import zero_optimizer_state_

__all__ = ["GHFP", "HARDNESS", "PRESETS", "RATES"]

log = logging.getLogger(__name__)

RATES = {
    "cubic": lambda p: 1.0 - (1.0 - p) ** 3,
    "linear": lambda p: p,
    "constant": lambda p: 1.0,
}
HARDNESS = {
    "soft": lambda p: 0.0,
    "hard": lambda p: 1.0,
    "linear": lambda p: p,
    "cubic": lambda p: 1.0 - (1.0 - p) ** 3,
}
PRESETS = {"sfp": "soft", "hfp": "hard", "ghfp": "linear"}


class GHFP:
    """Gradually hard filter pruning of a private copy of ``model`` (``self.model``, a ``GatedModel``).

    flops / sparsity: the final target (one of them; ``flops`` = fraction of the dense MACs kept).
    epochs: the length of the schedule ``T``; ramp_epochs: ``R`` (default ``ceil(2T/3)``), after
        which the selection is at the target and (for GHFP/HFP) fully hard.
    criterion / scope / criterion_options: how channels are ranked (any weight criterion).
    rate, hardness, soft_decay: the schedule (module docstring).
    """

    def __init__(self, model: nn.Module, example_inputs: Any, *, epochs: int, flops: float | None = None,
                 sparsity: float | None = None, criterion: str = "l2", scope: str | None = None,
                 criterion_options: dict[str, Any] | None = None, ramp_epochs: int | None = None,
                 rate: str = "cubic", hardness: str = "linear", soft_decay: float = 0.0,
                 leaf_modules: Sequence[type | str] = ()) -> None:
        if (flops is None) == (sparsity is None):
            raise PlanError("GHFP needs exactly one target: flops=<fraction of MACs kept> or sparsity=<fraction removed>")
        if rate not in RATES:
            raise PlanError(f"rate must be one of {sorted(RATES)}, got {rate!r}")
        hardness = PRESETS.get(hardness, hardness)
        if hardness not in HARDNESS:
            raise PlanError(f"hardness must be one of {sorted(HARDNESS)} (or sfp/hfp/ghfp), got {hardness!r}")
        if not 0.0 <= soft_decay <= 1.0:
            raise PlanError(f"soft_decay is a factor in [0, 1], got {soft_decay!r}")
        if epochs < 1:
            raise PlanError(f"epochs must be >= 1, got {epochs}")
        self.epochs = int(epochs)
        self.ramp_epochs = int(ramp_epochs) if ramp_epochs else max(1, math.ceil(2 * self.epochs / 3))
        self.rate, self.hardness, self.soft_decay = rate, hardness, float(soft_decay)
        self.target = ("flops", float(flops)) if flops is not None else ("sparsity", float(sparsity))
        Plan(criterion=criterion, scope=scope, criterion_options=criterion_options or {},
             **{self.target[0]: self.target[1]})  # validate now rather than at the first epoch
        self.criterion, self.scope, self.criterion_options = criterion, scope, dict(criterion_options or {})
        self.model = GatedModel(model, example_inputs, leaf_modules=leaf_modules)
        n = self.model.n_slots
        self.model.register_buffer("hard", torch.zeros(n, dtype=torch.bool))
        self.model.register_buffer("selected", torch.zeros(n, dtype=torch.bool))
        self.optimizers: list[torch.optim.Optimizer] = []
        self.history: list[dict[str, float]] = []

    # -- schedule ---------------------------------------------------------------------------------
    def progress(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.ramp_epochs)

    def plan_at(self, epoch: int) -> Plan:
        kind, value = self.target
        r = RATES[self.rate](self.progress(epoch))
        budget = 1.0 - (1.0 - value) * r if kind == "flops" else value * r
        if kind == "flops":
            return Plan(flops=min(1.0, budget), criterion=self.criterion, scope=self.scope,
                        criterion_options=self.criterion_options)
        return Plan(sparsity=budget, criterion=self.criterion, scope=self.scope, criterion_options=self.criterion_options)

    def lam(self, epoch: int) -> float:
        return float(HARDNESS[self.hardness](self.progress(epoch)))

    def alpha(self, epoch: int) -> float:
        return self.soft_decay * (1.0 - self.progress(epoch))

    # -- hooks ------------------------------------------------------------------------------------
    def on_train_begin(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None) -> None:
        if optimizer is not None and optimizer not in self.optimizers:
            self.optimizers.append(optimizer)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Let the method zero the optimizer state of channels that become hard."""
        self.on_train_begin(None, optimizer)

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, model: nn.Module | None = None) -> None:
        g = self.model
        selected, scores = self._select(self.plan_at(epoch))
        hard = self._harden(selected, scores, self.lam(epoch))
        broadcast_(selected, hard)
        g.selected.copy_(selected)
        g.hard.copy_(hard)
        self._apply(self.alpha(epoch))
        entry = {"epoch": epoch, "budget": self._budget_value(epoch), "selected": int(selected.sum()),
                 "hard": int(hard.sum()), "lambda": self.lam(epoch), "alpha": self.alpha(epoch),
                 "macs_ratio": g.macs_ratio((~selected).float())}
        self.history.append(entry)
        log.info("ghfp epoch %d: %s", epoch, entry)

    @torch.no_grad()
    def before_step(self, model: nn.Module | None = None) -> None:
        """Zero the gradients of hard channels (call between backward and optimizer.step)."""
        for p, axis, pos in self.model.entries.select(self.model.hard):
            if p.grad is not None:
                p.grad.index_fill_(axis, pos, 0.0)

    @torch.no_grad()
    def after_step(self, model: nn.Module | None = None) -> None:
        """Keep hard channels at exactly zero whatever the optimizer did (decoupled decay etc.)."""
        for p, axis, pos in self.model.entries.select(self.model.hard):
            p.index_fill_(axis, pos, 0.0)

    def finalize(self, **compile_kwargs: Any) -> nn.Module:
        """Make every selected channel hard and return the physically smaller model."""
        with torch.no_grad():
            self.model.hard |= self.model.selected
            self._apply(0.0)
        return self.model.finalize(**compile_kwargs)

    # -- internals --------------------------------------------------------------------------------
    def _budget_value(self, epoch: int) -> float:
        p = self.plan_at(epoch)
        return float(p.flops if p.flops is not None else p.sparsity)

    def _select(self, plan: Plan) -> tuple[torch.Tensor, dict[int, np.ndarray]]:
        g = self.model
        hard = g.hard.cpu().numpy()
        by_group = {grp.index: i for i, grp in enumerate(g.groups)}
        seen: dict[int, np.ndarray] = {}

        def force_hard_last(scores: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
            out = {}
            for gi, s in scores.items():
                seen[gi] = s
                h = hard[g.group_slice(by_group[gi])]
                if h.any():
                    s = s.copy()
                    s[h] = s.min() - 1.0 - np.abs(s).max()
                out[gi] = s
            return out

        resolution = g.resolution_from_plan(plan, adjust=force_hard_last)
        selected = ~g.slot_mask_of(resolution) & ~g.pinned.cpu()
        selected |= torch.from_numpy(hard)
        return selected, {by_group[gi]: s for gi, s in seen.items()}

    def _harden(self, selected: torch.Tensor, scores: dict[int, np.ndarray], lam: float) -> torch.Tensor:
        """Per group: keep the hard channels and harden the lowest-scoring selected ones until
        ``round(lam * #selected)`` are hard."""
        g = self.model
        hard = g.hard.cpu().clone()
        for i in range(len(g.groups)):
            sl = g.group_slice(i)
            sel, h = selected[sl].numpy(), hard[sl].numpy().copy()
            want = int(round(lam * sel.sum()))
            need = want - int(h.sum())
            if need <= 0:
                continue
            cand = np.nonzero(sel & ~h)[0]
            s = scores.get(i, np.zeros(len(sel)))
            order = cand[np.lexsort((cand, s[cand]))][:need]
            h[order] = True
            hard[sl] = torch.from_numpy(h)
        return hard

    @torch.no_grad()
    def _apply(self, alpha: float) -> None:
        g = self.model
        g.mask.copy_((~g.hard).to(g.mask.dtype))
        for p, axis, pos in g.entries.select(g.hard):
            p.index_fill_(axis, pos, 0.0)
            for opt in self.optimizers:
                zero_optimizer_state_(opt, p, axis, pos)
        soft = g.selected & ~g.hard
        if alpha != 1.0:
            for p, axis, pos in g.entries.select(soft, filters_only=True):
                p.index_copy_(axis, pos, p.index_select(axis, pos) * alpha)
