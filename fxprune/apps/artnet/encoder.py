"""ArtNet's encoders (torchvision GoogLeNet cut at a block, VGG-19 to relu4_1) and the mirrored decoder."""

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

from ...errors import ModelError, PlanError

__all__ = ["GOOGLENET_CUTS", "GoogLeNetEncoder", "IMAGENET_MEAN", "IMAGENET_STD", "Normalize", "VGGEncoder",
           "mirror_decoder"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GOOGLENET_CUTS = ("conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                  "inception4d", "inception4e", "inception5a", "inception5b")


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


Stage = tuple[str, int, int, int]  # (kind "conv" | "pool", in channels, out channels, stride)


def _seeded(seed: int | None, build: Callable[[], nn.Module]) -> nn.Module:
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _load_local(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what}: {path} is not a file (weights are only read from local files, never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{what}: {path} does not hold a state dict")
    return state


class GoogLeNetEncoder(nn.Module):
    """torchvision GoogLeNet up to and including block ``cut`` (input normalisation included)."""

    def __init__(self, cut: str = "inception3b", weights: str | Path | None = None, seed: int | None = 0) -> None:
        super().__init__()
        import torchvision

        if cut not in GOOGLENET_CUTS:
            raise PlanError(f"GoogLeNet cut {cut!r}: choose one of {', '.join(GOOGLENET_CUTS)}")
        g = _seeded(seed, lambda: torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False,
                                                                transform_input=False))
        if weights is not None:
            state = _load_local(weights, "--encoder-weights")
            state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
            try:
                missing, unexpected = g.load_state_dict(state, strict=False)
            except RuntimeError as exc:
                raise ModelError(f"--encoder-weights {weights}: not a torchvision GoogLeNet state dict "
                                f"({str(exc).splitlines()[-1].strip()})") from None
            needed = [k for k in missing if not k.startswith("fc.")]
            if needed or unexpected:
                raise ModelError(f"--encoder-weights {weights}: not a torchvision GoogLeNet state dict "
                                f"(missing {needed[:3]}, unexpected {unexpected[:3]})")
        names = [n for n, _ in g.named_children()]
        layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize())
        self.stages: list[Stage] = []
        channels = 3
        for name in names[: names.index(cut) + 1]:
            m = getattr(g, name)
            layers[name] = m
            if isinstance(m, nn.MaxPool2d):
                self.stages.append(("pool", channels, channels, 2))
            else:
                out = _out_channels(m)
                conv = m.conv if hasattr(m, "conv") else None
                stride = conv.stride[0] if conv is not None else 1
                self.stages.append(("conv", channels, out, stride))
                channels = out
        self.layers = nn.Sequential(layers)
        self.cut, self.out_channels = cut, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _out_channels(m: nn.Module) -> int:
    if hasattr(m, "conv"):
        return m.conv.out_channels
    # an Inception block: the concatenation of its four branches
    total = 0
    for branch in (m.branch1, m.branch2, m.branch3, m.branch4):
        last = [c for c in branch.modules() if isinstance(c, nn.Conv2d)][-1]
        total += last.out_channels
    return total


class VGGEncoder(nn.Module):
    """torchvision VGG-19 features up to ``relu4_1`` (AdaIN's encoder), random seeded weights or a
    local torchvision vgg19 checkpoint."""

    def __init__(self, weights: str | Path | None = None, seed: int | None = 0, last: int = 20) -> None:
        super().__init__()
        import torchvision

        v = _seeded(seed, lambda: torchvision.models.vgg19(weights=None))
        if weights is not None:
            v.load_state_dict(_load_local(weights, "VGG-19 weights"))
        feats = v.features[: last + 1]
        self.layers = nn.Sequential(OrderedDict([("normalize", Normalize()), *[(str(i), m) for i, m in enumerate(feats)]]))
        self.stages: list[Stage] = []
        channels = 3
        for m in feats:
            if isinstance(m, nn.Conv2d):
                self.stages.append(("conv", m.in_channels, m.out_channels, 1))
                channels = m.out_channels
            elif isinstance(m, nn.MaxPool2d):
                self.stages.append(("pool", channels, channels, 2))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def mirror_decoder(stages: Sequence[Stage], seed: int | None = None) -> nn.Sequential:
    """The decoder mirroring an encoder's stages (see the module docstring)."""

    def build() -> nn.Sequential:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        convs = [s for s in stages if s[0] == "conv"]
        k = 0
        for i, (kind, cin, cout, stride) in enumerate(reversed(stages)):
            if kind == "pool" or stride > 1:
                layers[f"up{i}"] = nn.Upsample(scale_factor=float(stride), mode="nearest")
            if kind == "conv":
                k += 1
                layers[f"conv{i}"] = nn.Conv2d(cout, cin, 3, padding=1)
                if k < len(convs):
                    layers[f"relu{i}"] = nn.ReLU()
        return nn.Sequential(layers)

    return _seeded(seed, build)


# ------------------------------------------------------------------------------------------------
# Feature transforms (channel-aligned: the compiler prunes through them)
# ------------------------------------------------------------------------------------------------
