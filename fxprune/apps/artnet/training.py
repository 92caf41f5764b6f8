"""Training ArtNet's decoder to invert the encoder (reconstruction + perceptual loss)."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...train.loop import fit
from .images import random_crops
from .network import StyleTransferNet, _to_size

__all__ = ["train_decoder"]


def train_decoder(net: StyleTransferNet, images: Sequence[np.ndarray], *, steps: int = 200, batch: int = 8,
                  crop: int = 128, lr: float = 1e-3, perceptual: float = 1.0, seed: int = 0,
                  progress: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train ``net.decoder`` (the encoder stays frozen) to invert the encoder on random crops:
    loss = ||D(E(x)) - x||² + perceptual * ||E(D(E(x))) - E(x)||² / mean(E(x)²)."""
    for p in net.encoder.parameters():
        p.requires_grad_(False)

    def loss_fn(model: StyleTransferNet, x: torch.Tensor, _: Any):
        with torch.no_grad():
            f = model.encoder(x)
        y = _to_size(model.decoder(f), x)
        pixel = F.mse_loss(y, x)
        feat = F.mse_loss(model.encoder(y), f) / f.square().mean().clamp_min(1e-12)
        return pixel + perceptual * feat, None, {"pixel": float(pixel.detach()), "perceptual": float(feat.detach())}

    def report(step: int, entry: dict[str, float]) -> None:
        rec = {"step": step, "loss": entry["loss"], "pixel": entry["pixel"], "perceptual": entry["perceptual"]}
        history.append(rec)
        if progress is not None:
            progress(step, rec)

    history: list[dict[str, float]] = []
    # one "epoch" per step: each draws its own seeded crops
    fit(net, lambda step: [(random_crops(images, batch, crop, seed=seed * 100003 + step), None)], epochs=steps,
        steps_per_epoch=1, parameters=net.decoder.parameters(), loss_fn=loss_fn,
        optimizer=lambda params: torch.optim.Adam(params, lr=lr),
        schedule=lambda opt, total: torch.optim.lr_scheduler.CosineAnnealingLR(opt, total), on_epoch_end=report,
        description="decoder")
    return history
