"""Images for style transfer: scikit-image's samples, files, tensors and random crops."""

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

from ...errors import ModelError

__all__ = ["SAMPLE_IMAGES", "load_image", "random_crops", "sample_image", "save_image", "to_tensor"]

SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "retina", "motorcycle_left")


def sample_image(name: str) -> np.ndarray:
    """A colour sample image that ships with scikit-image (H x W x 3 uint8)."""
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    if name not in SAMPLE_IMAGES:
        raise ModelError(f"no bundled sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    img = getattr(skimage.data, name)()
    return img[..., :3]


def to_tensor(img: np.ndarray, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float in [0, 1], resized (bilinear, antialiased) to ``size``."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        x = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x


def load_image(spec: str | Path, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """``skimage:NAME`` (a bundled sample) or an image file -> 1 x 3 x H x W in [0, 1]."""
    spec = str(spec)
    if spec.startswith("skimage:"):
        return to_tensor(sample_image(spec.split(":", 1)[1]), size)
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"image {spec}: no such file (or use skimage:NAME, NAME one of {', '.join(SAMPLE_IMAGES)})")
    from PIL import Image

    return to_tensor(np.asarray(Image.open(path).convert("RGB")), size)


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (x[0].detach().float().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def random_crops(images: Sequence[np.ndarray], n: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops (random scale 0.5-1 of the shorter side, horizontal
    flips, mild colour jitter) of the given images -> n x 3 x size x size in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        t = to_tensor(img[y: y + side, x: x + side], size)
        if rng.random() < 0.5:
            t = t.flip(3)
        t = (t * torch.from_numpy(rng.uniform(0.85, 1.15, size=(1, 3, 1, 1))).float()).clamp(0, 1)
        out.append(t)
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------
# Decoder training and zero-channel pruning
# ------------------------------------------------------------------------------------------------
