"""``fit``: the one training loop (classifiers by default; optimizer, schedule and loss pluggable),
``accuracy`` and ``recalibrate_bn``."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import average_

__all__ = ["accuracy", "fit", "recalibrate_bn"]

log = logging.getLogger(__name__)

Hook = Callable[[int, nn.Module], None]


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Any]) -> float:
    """Top-1 accuracy of ``model`` (in eval mode; its mode is restored) over ``loader``."""
    was = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    finally:
        model.train(was)
    return correct / max(total, 1)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], max_batches: int | None = None) -> int:
    """Re-estimate every batch-norm layer's running statistics from ``batches`` (inputs, or
    (inputs, targets)) with a cumulative average; the model's mode is restored. Returns the
    number of batches used. Needed after the gates of a relaxed search are binarised: the running
    statistics were gathered under gate values that no longer hold."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [m.momentum for m in norms]
    was = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    used = 0
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            used += 1
    finally:
        for m, mom in zip(norms, saved):
            m.momentum = mom
        model.train(was)
    # under torch.distributed every rank saw its own shard: average so that all ranks hold the same
    # model (the variance becomes the mean of per-rank variances: exact up to the spread of shard means)
    average_(*[t for m in norms for t in (m.running_mean, m.running_var) if t is not None])
    return used


def fit(model: nn.Module, loader: Iterable[Any] | Callable[[int], Iterable[Any]], *, epochs: int, lr: float = 0.1,
        momentum: float = 0.9, weight_decay: float = 5e-4, val_loader: Iterable[Any] | None = None,
        progress: bool = False, on_epoch_start: Hook | None = None,
        after_step: Callable[[nn.Module], None] | None = None, callbacks: Sequence[Any] = (),
        parameters: Iterable[nn.Parameter] | None = None, description: str = "train",
        optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
        schedule: Callable[[torch.optim.Optimizer, int], Any] | None = None,
        loss_fn: Callable[[nn.Module, Any, Any], tuple[torch.Tensor, Any, dict[str, float]]] | None = None,
        steps_per_epoch: int | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place: the one training loop of fxprune (methods, benchmarks, the apps).

    Defaults: SGD (Nesterov off) with a cosine learning rate per step and cross-entropy.
    ``optimizer(params)`` and ``schedule(optimizer, total_steps)`` (stepped after every optimizer
    step; the cosine is then not applied) replace them; ``loss_fn(model, x, y) -> (loss, logits or
    None, extra metrics)`` replaces the loss (train accuracy is logged when it gives logits and
    ``y``). ``loader`` is an iterable of ``(x, y)`` batches, or ``loader(epoch)`` giving one epoch's
    batches (then ``steps_per_epoch`` tells the schedule how many).

    ``parameters``: what the optimizer updates (default: all of ``model``'s). Hooks let
    training-time pruning methods act: ``on_epoch_start(epoch, model)`` and ``after_step(model)``
    as functions, and ``callbacks`` — objects with any of ``on_train_begin(model, optimizer)``,
    ``on_epoch_start(epoch, model)``, ``before_step(model)`` (after backward, before the
    optimizer step), ``after_step(model)``. ``model`` may be a DDP wrapper; the sampler's epoch
    is set when it has ``set_epoch``. Returns per-epoch logs (loss, train accuracy, the loss's
    extra metrics, val accuracy when ``val_loader`` is given); each is logged and passed to
    ``on_epoch_end(epoch, log)``."""
    params = list(model.parameters() if parameters is None else parameters)
    opt = optimizer(params) if optimizer is not None else torch.optim.SGD(params, lr=lr, momentum=momentum,
                                                                           weight_decay=weight_decay)
    per_epoch = steps_per_epoch if steps_per_epoch is not None else len(loader)  # type: ignore[arg-type]
    steps = epochs * per_epoch
    sched = schedule(opt, max(1, steps)) if schedule is not None else None

    def call(hook: str, *args: Any) -> None:
        for cb in callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)

    call("on_train_begin", model, opt)
    step = 0
    history = []
    bar = _progress(progress)
    task = bar.add_task(description, total=steps) if bar is not None else None
    try:
        for epoch in range(epochs):
            if on_epoch_start is not None:
                on_epoch_start(epoch, model)
            call("on_epoch_start", epoch, model)
            batches = loader(epoch) if callable(loader) else loader
            if hasattr(getattr(batches, "dataset", None), "epoch"):
                batches.dataset.epoch = epoch  # type: ignore[union-attr]
            sampler = getattr(batches, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            model.train()
            t0, loss_sum, correct, seen, counted = time.perf_counter(), 0.0, 0, 0, 0
            extras: dict[str, float] = {}
            for x, y in batches:
                if sched is None:
                    for g in opt.param_groups:
                        g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
                if loss_fn is None:
                    out = model(x)
                    loss, extra = F.cross_entropy(out, y), {}
                else:
                    loss, out, extra = loss_fn(model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                call("before_step", model)
                opt.step()
                if after_step is not None:
                    after_step(model)
                call("after_step", model)
                if sched is not None:
                    sched.step()
                n = len(y) if y is not None else len(x)
                loss_sum += loss.item() * n
                for k, v in extra.items():
                    extras[k] = extras.get(k, 0.0) + float(v) * n
                if out is not None and y is not None:
                    correct += int((out.argmax(1) == y).sum())
                    counted += n
                seen += n
                step += 1
                if bar is not None:
                    bar.advance(task)
            entry = {"epoch": epoch, "loss": loss_sum / seen}
            if counted:
                entry["train_acc"] = correct / counted
            entry.update({k: v / seen for k, v in extras.items()})
            entry["seconds"] = time.perf_counter() - t0
            if val_loader is not None:
                entry["val_acc"] = accuracy(model, val_loader)
            history.append(entry)
            log.info("%s epoch %d: %s", description, epoch, {k: round(v, 4) for k, v in entry.items()})
            if on_epoch_end is not None:
                on_epoch_end(epoch, entry)
    finally:
        if bar is not None:
            bar.stop()
    model.eval()
    return history


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   transient=True)
    bar.start()
    return bar
