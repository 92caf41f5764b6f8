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

from .images import random_crops
from .network import StyleTransferNet, _to_size

__all__ = ["train_decoder"]


def train_decoder(net: StyleTransferNet, images: Sequence[np.ndarray], *, steps: int = 200, batch: int = 8,
                  crop: int = 128, lr: float = 1e-3, perceptual: float = 1.0, seed: int = 0,
                  progress: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train ``net.decoder`` (the encoder stays frozen) to invert the encoder on random crops:
    loss = ||D(E(x)) - x||² + perceptual * ||E(D(E(x))) - E(x)||² / mean(E(x)²)."""
    net.encoder.eval()
    for p in net.encoder.parameters():
        p.requires_grad_(False)
    net.decoder.train()
    opt = torch.optim.Adam(net.decoder.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    history = []
    for step in range(steps):
        x = random_crops(images, batch, crop, seed=seed * 100003 + step)
        with torch.no_grad():
            f = net.encoder(x)
        y = _to_size(net.decoder(f), x)
        pixel = F.mse_loss(y, x)
        feat = F.mse_loss(net.encoder(y), f) / f.square().mean().clamp_min(1e-12)
        loss = pixel + perceptual * feat
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        rec = {"step": step, "loss": float(loss.detach()), "pixel": float(pixel.detach()), "perceptual": float(feat.detach())}
        history.append(rec)
        if progress is not None:
            progress(step, rec)
    net.eval()
    return history
