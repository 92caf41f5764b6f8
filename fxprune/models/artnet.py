"""ArtNet: real-time universal style transfer with a GoogLeNet encoder, the sandwich swap transform
(S²) and a mirrored decoder; AdaIN and WCT as alternative transforms; a VGG-19 AdaIN baseline.

- ``GoogLeNetEncoder``: torchvision's GoogLeNet up to a configurable block (default
  ``inception3b``, stride 8, 480 channels), ImageNet input normalisation inside. Weights are
  random (seeded) unless a local torchvision checkpoint file is given; nothing is downloaded.
- ``mirror_decoder``: the encoder's stages in reverse — every conv / inception block becomes a
  3x3 conv from its output width back to its input width + ReLU, every stride-2 stage a nearest
  x2 upsampling; the last conv (to RGB) has no ReLU.
- Transforms (``ChannelAligned`` modules, so the compiler prunes through them): ``AdaIN`` (per
  channel mean/std), ``WCT`` (whitening and colouring), ``S2`` = whitening -> style swap with 3x3
  normalised style patches -> colouring with the style statistics. ``alpha`` blends the result
  with the content features. Channels that are zero in both the content and the style features
  of a sample are left out of the statistics and come out zero: exactly what removing them does,
  so pruned and masked-dense models agree (and the covariances stay well conditioned).
- ``ArtNet(content, style)`` maps two N x 3 x H x W images in [0, 1] to an N x 3 x H x W image.
- ``train_decoder``: reconstruction + perceptual loss on images (scikit-image's samples).
- ``zero_channel_prune``: the exact zero-channel pruning of ArtNet's paper on calibration images.
"""

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

from ..errors import PlanError
from ..graph.rules.aligned import ChannelAligned, register_channel_aligned

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GOOGLENET_CUTS = ("conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                  "inception4d", "inception4e", "inception5a", "inception5b")
WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED = WEIGHTS_DIR / "artnet_s2_inception3b.pt"


# ------------------------------------------------------------------------------------------------
# Encoders and the mirrored decoder
# ------------------------------------------------------------------------------------------------
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
        raise PlanError(f"{what}: {path} is not a file (weights are only read from local files, never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PlanError(f"{what}: {path} does not hold a state dict")
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
                raise PlanError(f"--encoder-weights {weights}: not a torchvision GoogLeNet state dict "
                                f"({str(exc).splitlines()[-1].strip()})") from None
            needed = [k for k in missing if not k.startswith("fc.")]
            if needed or unexpected:
                raise PlanError(f"--encoder-weights {weights}: not a torchvision GoogLeNet state dict "
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


# ------------------------------------------------------------------------------------------------
# The networks
# ------------------------------------------------------------------------------------------------
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
                raise PlanError(f"no bundled ArtNet checkpoint at {BUNDLED}; train one with "
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
            raise PlanError(f"--decoder-weights {path}: does not fit this decoder (cut {self.encoder.cut!r}): "
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


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------
SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "retina", "motorcycle_left")


def sample_image(name: str) -> np.ndarray:
    """A colour sample image that ships with scikit-image (H x W x 3 uint8)."""
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    if name not in SAMPLE_IMAGES:
        raise PlanError(f"no bundled sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
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
        raise PlanError(f"image {spec}: no such file (or use skimage:NAME, NAME one of {', '.join(SAMPLE_IMAGES)})")
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
