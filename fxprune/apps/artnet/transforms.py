"""The style transforms: AdaIN, WCT and the sandwich swap S² (whitening -> style swap -> colouring).
Each is a channel-aligned module, registered explicitly, so the compiler prunes through it."""

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

from ...errors import PlanError
from ...graph.rules.aligned import ChannelAligned, register_channel_aligned

__all__ = ["AdaIN", "FeatureTransform", "S2", "Stats", "TRANSFORMS", "WCT", "colour", "match_patches", "mean_cov",
           "patch_grid", "style_patches", "style_swap", "whiten"]


def _active(fc: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
    """Indices of channels that are non-zero somewhere in content or style (C x ... tensors)."""
    live = (fc.flatten(1).abs().amax(1) > 0) | (fs.flatten(1).abs().amax(1) > 0)
    return live.nonzero().flatten()


def mean_cov(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C x 1) and covariance (C x C, float64) over positions of a C x P feature matrix."""
    mu = f.mean(1, keepdim=True)
    x = f - mu
    return mu.double(), (x @ x.T).double() / max(1, f.shape[1] - 1)


class Stats:
    """Mean and the eigenpairs of the covariance of a C x P feature matrix; eigenvalues below
    ``eps`` times the largest carry no signal and are dropped."""

    def __init__(self, f: torch.Tensor, eps: float = 1e-5) -> None:
        self.mu, cov = mean_cov(f)
        lam, vec = torch.linalg.eigh(cov)
        keep = lam > eps * lam[-1].clamp_min(1e-30)
        self.lam, self.vec = lam[keep], vec[:, keep]

    def whiten(self, f: torch.Tensor) -> torch.Tensor:
        """Centred, decorrelated, unit-variance version of ``f`` (C x P, float64)."""
        return self.vec @ ((self.vec.T @ (f.double() - self.mu)) / self.lam.sqrt()[:, None])

    def colour(self, w: torch.Tensor) -> torch.Tensor:
        """Whitened features ``w`` (C x P) with this mean and covariance."""
        return self.vec @ (self.lam.sqrt()[:, None] * (self.vec.T @ w.double())) + self.mu


def whiten(f: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Whitened features of a C x P matrix (float64)."""
    return Stats(f, eps).whiten(f)


def colour(w: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give whitened features ``w`` (C x P) the mean and covariance of ``style`` (C x Q)."""
    return Stats(style, eps).colour(w)


def patch_grid(hw: Sequence[int], patch: int, max_patches: int) -> tuple[int, int]:
    """(stride, number of patches): the smallest stride that gives at most ``max_patches``
    ``patch`` x ``patch`` patches of an ``hw`` map."""
    hs, ws = hw[0] - patch + 1, hw[1] - patch + 1
    if hs < 1 or ws < 1:
        raise PlanError(f"style features {tuple(hw)} are smaller than the {patch}x{patch} swap patch; "
                        "use a larger style image")
    stride = 1
    while math.ceil(hs / stride) * math.ceil(ws / stride) > max_patches:
        stride += 1
    return stride, math.ceil(hs / stride) * math.ceil(ws / stride)


def style_patches(s: torch.Tensor, patch: int = 3, max_patches: int = 1024) -> torch.Tensor:
    """``patch`` x ``patch`` patches of ``s`` (C x Hs x Ws) as K x C x patch x patch (``patch_grid``)."""
    stride, _ = patch_grid(s.shape[1:], patch, max_patches)
    return F.unfold(s[None], patch, stride=stride)[0].T.reshape(-1, s.shape[0], patch, patch)


def match_patches(c: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """For every position of ``c`` (C x H x W; zero padded at the border), the index of the style
    patch with the highest normalised cross-correlation with the content patch there (H x W)."""
    k = patches.shape[-1]
    norm = patches.flatten(1).norm(dim=1).clamp_min(1e-12)
    resp = F.conv2d(c[None], patches / norm[:, None, None, None], padding=k // 2)  # 1 x K x H x W
    return resp[0].argmax(0)


def style_swap(c: torch.Tensor, s: torch.Tensor, patch: int = 3, max_patches: int = 1024) -> torch.Tensor:
    """Replace every patch of ``c`` (C x H x W) by its best-matching style patch of ``s``
    (``match_patches``); overlapping patches are averaged."""
    C, H, W = c.shape
    P = style_patches(s, patch, max_patches)
    best = match_patches(c, P).flatten()
    cols = P.flatten(1)[best].T[None]  # 1 x C*p*p x H*W
    pad = patch // 2
    out = F.fold(cols, (H, W), patch, padding=pad)
    count = F.fold(torch.ones_like(cols[:, :1]).expand(1, patch * patch, H * W), (H, W), patch, padding=pad)
    return out[0] / count[0]


class FeatureTransform(ChannelAligned):
    """Base of the style transforms: per sample, on the channels that are live in content or
    style, then blended with the content features by ``alpha``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise PlanError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha

    def transfer(self, fc: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:  # C x H x W, C x Hs x Ws
        raise NotImplementedError

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if content.shape[0] != style.shape[0] and style.shape[0] != 1:
            raise PlanError(f"{type(self).__name__}: {content.shape[0]} content images but {style.shape[0]} style "
                            "images (give one style image or one per content image)")
        if content.shape[1] != style.shape[1]:
            raise PlanError(f"{type(self).__name__}: content has {content.shape[1]} channels, style {style.shape[1]}")
        out = torch.zeros_like(content)
        for b in range(content.shape[0]):
            fc, fs = content[b], style[b if style.shape[0] > 1 else 0]
            idx = _active(fc, fs)
            if idx.numel() == 0:
                continue
            t = self.transfer(fc[idx], fs[idx]).to(content.dtype)
            out[b, idx] = self.alpha * t + (1.0 - self.alpha) * fc[idx]
        return out

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def macs_terms(self, shapes: Sequence[tuple[int, ...] | None]) -> list[tuple[float, int]]:
        """MACs of the matmuls and convolutions (what FlopCounterMode counts; eigendecompositions
        are not counted) at full rank with every channel live, by degree in the channel count."""
        if len(shapes) < 2 or shapes[0] is None or shapes[1] is None:
            return []
        c, s = shapes[0], shapes[1]
        n, C = c[0], c[1]
        P, Q = math.prod(c[2:]), math.prod(s[2:])
        return [(n * base, degree) for base, degree in self.sample_terms(C, P, Q, tuple(s[2:])) if base]

    def sample_terms(self, C: int, P: int, Q: int, style_hw: tuple[int, ...]) -> list[tuple[float, int]]:
        return []


@register_channel_aligned
class AdaIN(FeatureTransform):
    """Adaptive instance normalisation: per channel, content standardised, style mean/std."""

    def __init__(self, alpha: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__(alpha)
        self.eps = eps

    def transfer(self, fc: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        c, s = fc.flatten(1), fs.flatten(1)
        mc, sc = c.mean(1, keepdim=True), c.std(1, keepdim=True) + self.eps
        ms, ss = s.mean(1, keepdim=True), s.std(1, keepdim=True)
        return ((c - mc) / sc * ss + ms).view_as(fc)


@register_channel_aligned
class WCT(FeatureTransform):
    """Whitening and colouring transform (Li et al. 2017)."""

    def __init__(self, alpha: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__(alpha)
        self.eps = eps

    def sample_terms(self, C: int, P: int, Q: int, style_hw: tuple[int, ...]) -> list[tuple[float, int]]:
        # content covariance + whitening (2 matmuls), style covariance, colouring (2 matmuls)
        return [(C * C * (5 * P + Q), 2)]

    def transfer(self, fc: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        return Stats(fs.flatten(1), self.eps).colour(whiten(fc.flatten(1), self.eps)).view_as(fc)


@register_channel_aligned
class S2(FeatureTransform):
    """Sandwich swap transform: whitening -> style swap of whitened features -> colouring."""

    def __init__(self, alpha: float = 1.0, eps: float = 1e-5, patch: int = 3, max_patches: int = 1024) -> None:
        super().__init__(alpha)
        self.eps, self.patch, self.max_patches = eps, patch, max_patches

    def transfer(self, fc: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        style = Stats(fs.flatten(1), self.eps)
        wc = whiten(fc.flatten(1), self.eps).to(fc.dtype).view_as(fc)
        ws = style.whiten(fs.flatten(1)).to(fs.dtype).view_as(fs)
        swapped = style_swap(wc, ws, self.patch, self.max_patches)
        return style.colour(swapped.flatten(1)).view_as(fc)

    def sample_terms(self, C: int, P: int, Q: int, style_hw: tuple[int, ...]) -> list[tuple[float, int]]:
        k = self.patch
        if style_hw[0] < k or style_hw[1] < k:
            return []
        _, patches = patch_grid(style_hw, k, self.max_patches)
        # covariances and whitening of content and style, colouring: C^2 terms; patch matching: C
        return [(C * C * (5 * P + 3 * Q), 2), (patches * C * k * k * P, 1)]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, patch={self.patch}, max_patches={self.max_patches}"


TRANSFORMS: dict[str, Callable[..., FeatureTransform]] = {"s2": S2, "adain": AdaIN, "wct": WCT}
