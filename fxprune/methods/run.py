"""One entry point for every way of getting a pruned, trained model to a MACs budget, shared by
``fxprune train`` and ``benchmarks/training_methods.py`` so both run the same thing.

Methods (all at the same epoch budget ``epochs``, counted after any pre-training):

- ``dense``: keep training the dense model;
- ``oneshot``: prune with ``criterion`` at the start, fine-tune the small model ``epochs`` epochs;
- ``sfp`` / ``hfp`` / ``ghfp``: the filter-pruning schedule (``fxprune.methods.GHFP``) over
  ``epochs`` epochs, then finalize;
- ``dais``: indicator search for ``round(search_fraction * epochs)`` epochs, binarise, finalize
  (batch-norm statistics re-estimated), fine-tune the small model for the rest.

Under ``torch.distributed`` (torchrun) the trained module is wrapped in DDP; masks and
indicators stay identical across ranks (checked by ``fxprune train``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import compiler
from ..errors import PlanError
from ..plan import Plan
from ..report import report
from ..train.distributed import distributed
from ..train.loop import accuracy, fit, recalibrate_bn
from .dais import DAIS
from .ghfp import GHFP

__all__ = ["METHODS", "MethodConfig", "run_method"]

log = logging.getLogger(__name__)

METHODS = ("dense", "oneshot", "sfp", "hfp", "ghfp", "dais")


@dataclass
class MethodConfig:
    method: str
    flops: float = 0.5
    epochs: int = 10
    criterion: str | None = None  # default: l2 for the filter-pruning schedule, l1 for one-shot
    scope: str | None = None
    lr: float = 0.1
    finetune_lr: float | None = None  # default: lr / 5 for fine-tuning a pruned model
    search_fraction: float = 0.5
    progress: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of GHFP / DAIS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PlanError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.epochs < 1:
            raise PlanError(f"epochs must be >= 1, got {self.epochs}")


def _wrap(model: nn.Module) -> nn.Module:
    return nn.parallel.DistributedDataParallel(model) if distributed() else model


def run_method(cfg: MethodConfig, model: nn.Module, example_inputs: Any, train: Iterable[Any],
               val: Iterable[Any], test: Iterable[Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train/prune a copy of ``model`` with ``cfg``; returns (the final model, a result record with
    test accuracy, MACs/params ratios, wall time, per-epoch history and the method's own log).
    The caller's model is not modified."""
    t0 = time.perf_counter()
    ft_lr = cfg.finetune_lr if cfg.finetune_lr is not None else cfg.lr / 5
    record: dict[str, Any] = {"method": cfg.method, "flops_target": cfg.flops, "epochs": cfg.epochs}
    desc = cfg.method
    if cfg.method == "dense":
        small = copy.deepcopy(model)
        record["history"] = fit(_wrap(small), train, epochs=cfg.epochs, lr=cfg.lr, progress=cfg.progress,
                                val_loader=test, description=desc)
        record.update(macs_ratio=1.0, params_ratio=1.0)
    elif cfg.method == "oneshot":
        criterion = cfg.criterion or "l1"
        small = compiler.compile(model, Plan(flops=cfg.flops, criterion=criterion, scope=cfg.scope),
                                example_inputs=example_inputs)
        record["criterion"] = criterion
        record["history"] = fit(_wrap(small), train, epochs=cfg.epochs, lr=ft_lr, progress=cfg.progress,
                                val_loader=test, description=f"{desc} {criterion}")
    elif cfg.method in ("sfp", "hfp", "ghfp"):
        criterion = cfg.criterion or "l2"
        meth = GHFP(model, example_inputs, epochs=cfg.epochs, flops=cfg.flops, criterion=criterion, scope=cfg.scope,
                    hardness=cfg.method, **cfg.options)
        record["criterion"] = criterion
        record["history"] = fit(_wrap(meth.model), train, epochs=cfg.epochs, lr=cfg.lr, callbacks=[meth],
                                progress=cfg.progress, val_loader=test, description=desc)
        small = meth.finalize()
        # soft channels had non-zero filters (SFP: BN shifts behind zeroed filters) until finalize
        # removed them: re-estimate BN statistics on the training data, as DAIS does
        recalibrate_bn(small, train)
        record["schedule"] = meth.history
        record["masks"] = {"hard": meth.model.hard.clone(), "selected": meth.model.selected.clone()}
    else:  # dais
        search = min(cfg.epochs, max(1, round(cfg.search_fraction * cfg.epochs)))
        steps = len(train)  # type: ignore[arg-type]
        meth = DAIS(model, example_inputs, flops=cfg.flops, val_data=val, search_epochs=search,
                    steps_per_epoch=steps, **cfg.options)
        record["history"] = fit(_wrap(meth.model), train, epochs=search, lr=cfg.lr, callbacks=[meth],
                                parameters=meth.weight_parameters(), progress=cfg.progress, val_loader=test,
                                description=f"{desc} search")
        small = meth.finalize(calibration_data=train)
        record["search"] = meth.history
        record["binarized"] = meth.binarized
        record["masks"] = {"mask": meth.model.mask.clone(), "alpha": meth.model.alpha.detach().clone()}
        if cfg.epochs > search:
            record["history"] += fit(_wrap(small), train, epochs=cfg.epochs - search, lr=ft_lr,
                                     progress=cfg.progress, val_loader=test, description=f"{desc} fine-tune")
    if cfg.method != "dense":
        rep = report(small)
        record.update(macs_ratio=rep.macs_ratio, params_ratio=rep.params_ratio)
    record["wall_seconds"] = time.perf_counter() - t0
    if test is not None:
        record["test_accuracy"] = accuracy(small, test)
    log.info("%s: %s", cfg.method, {k: v for k, v in record.items() if isinstance(v, (int, float, str))})
    return small, record
