"""The style-transfer networks: encoder -> transform -> decoder (ArtNet, the VGG-19 AdaIN baseline)."""

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
from .encoder import GoogLeNetEncoder, VGGEncoder, _load_local, mirror_decoder
from .transforms import TRANSFORMS, AdaIN, FeatureTransform

__all__ = ["ArtNet", "BUNDLED", "StyleTransferNet", "VGGAdaIN", "WEIGHTS_DIR", "default_decoder_weights"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED = WEIGHTS_DIR / "artnet_s2_inception3b.pt"


class StyleTransferNet(nn.Module):
    """encoder -> transform(content features, style features) -> decoder, at the content size."""

    def __init__(self, encoder: nn.Module, transform: FeatureTransform, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.transform, self.decoder = encoder, transform, decoder
        self.encoder.eval()

    def train(self, mode: bool = True) -> StyleTransferNet:
        """The encoder is a frozen feature extractor: its batch norms always use their running
        statistics (``train()`` only switches the decoder)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.transform(self.encoder(content), self.encoder(style)))
        return _to_size(out, content)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decoder(encoder(x)): what the decoder is trained for."""
        return _to_size(self.decoder(self.encoder(x)), x)


def _to_size(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The decoder's output at the input's size: the identity when H and W are multiples of the
    encoder's stride (bilinear resampling at scale 1 reads each pixel with weight 1), a small
    resize otherwise."""
    return F.interpolate(out, size=like.shape[2:], mode="bilinear", align_corners=False)


class ArtNet(StyleTransferNet):
    """GoogLeNet encoder (cut at ``cut``) + ``transform`` ("s2", "adain", "wct") + mirrored
    decoder. ``ArtNet()`` has random, seeded weights; ``encoder_weights`` is a local torchvision
    GoogLeNet checkpoint; ``decoder_weights`` a state dict of the decoder or of a whole ArtNet
    ("bundled": the checkpoint trained here, see ``default_decoder_weights``)."""

    def __init__(self, transform: str = "s2", *, cut: str = "inception3b", alpha: float = 1.0,
                 encoder_weights: str | Path | None = None, decoder_weights: str | Path | None = None,
                 max_patches: int = 1024, seed: int = 0) -> None:
        if transform not in TRANSFORMS:
            raise PlanError(f"transform {transform!r}: choose one of {', '.join(TRANSFORMS)}")
        if decoder_weights == "bundled":
            decoder_weights = default_decoder_weights()
            if decoder_weights is None:
                raise ModelError(f"no bundled ArtNet checkpoint at {BUNDLED}; train one with "
                                "benchmarks/artnet_train_decoder.py")
        encoder = GoogLeNetEncoder(cut, encoder_weights, seed=seed)
        kwargs = {"max_patches": max_patches} if transform == "s2" else {}
        super().__init__(encoder, TRANSFORMS[transform](alpha, **kwargs), mirror_decoder(encoder.stages, seed=seed + 1))
        if decoder_weights is not None:
            self.load_weights(decoder_weights, encoder_too=encoder_weights is None)

    def load_weights(self, path: str | Path, *, encoder_too: bool = True) -> None:
        """Load a decoder state dict, or a whole-network one (``encoder.*`` / ``decoder.*`` keys;
        the encoder part only with ``encoder_too``)."""
        state = _load_local(path, "--decoder-weights")
        if any(k.startswith("decoder.") for k in state):
            if encoder_too:
                self.encoder.load_state_dict({k[8:]: v.float() for k, v in state.items() if k.startswith("encoder.")})
            state = {k[8:]: v for k, v in state.items() if k.startswith("decoder.")}
        try:
            self.decoder.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as exc:
            raise ModelError(f"--decoder-weights {path}: does not fit this decoder (cut {self.encoder.cut!r}): "
                            f"{str(exc).splitlines()[0]}") from None


class VGGAdaIN(StyleTransferNet):
    """The AdaIN baseline (Huang & Belongie 2017): VGG-19 to relu4_1, AdaIN, mirrored decoder."""

    def __init__(self, alpha: float = 1.0, weights: str | Path | None = None, seed: int = 0) -> None:
        encoder = VGGEncoder(weights, seed=seed)
        super().__init__(encoder, AdaIN(alpha), mirror_decoder(encoder.stages, seed=seed + 1))


def default_decoder_weights() -> Path | None:
    """The ArtNet (S², inception3b) checkpoint trained by ``benchmarks/artnet_train_decoder.py``
    and shipped with the package, when present."""
    return BUNDLED if BUNDLED.is_file() else None
