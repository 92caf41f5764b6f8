"""Model specs resolved in one place: ``torchvision:resnet50``, ``cifar:resnet56``,
``skeleton:cp_attention`` (N x 3 x 64 x 18 pose sequences).

Weights are never downloaded: torchvision models are built with ``weights=None``; pass a local
state-dict file to load trained weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..apps.cp.model import CPAttentionNet
from ..errors import ModelError, PlanError
from .cifar import MODELS

__all__ = ["ZOOS", "get_model", "load_weights", "randomize_for_verification", "register_zoo"]

ModelFactory = Callable[[str], tuple[nn.Module, tuple[int, ...]]]
ZOOS: dict[str, ModelFactory] = {}


def register_zoo(prefix: str) -> Callable[[ModelFactory], ModelFactory]:
    def deco(fn: ModelFactory) -> ModelFactory:
        ZOOS[prefix] = fn
        return fn

    return deco


@register_zoo("torchvision")
def _torchvision(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    import torchvision

    if name not in torchvision.models.list_models():
        raise ModelError(f"torchvision has no model {name!r}")
    kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    size = 299 if name == "inception_v3" else 224
    return model, (1, 3, size, size)


@register_zoo("cifar")
def _cifar(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name not in MODELS:
        raise ModelError(f"no CIFAR model {name!r}; available: {sorted(MODELS)}")
    return MODELS[name](), (1, 3, 32, 32)


@register_zoo("skeleton")
def _skeleton(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name != "cp_attention":
        raise ModelError(f"no skeleton model {name!r}; available: ['cp_attention']")
    return CPAttentionNet(), (1, 3, 64, 18)


def randomize_for_verification(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a freshly initialised model random BN statistics and no constant parameters, in place.

    With default statistics (mean 0, var 1) and zero-initialised heads, many channels look alike
    and a classifier's output can be constant, so a wrong pruned model could pass verification.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g).to(p.dtype)
            if p.numel() > 1 and float(p.float().std()) == 0.0:
                p.add_(noise * 0.05)
            elif p.ndim == 1 and p.numel() > 1:
                p.add_(noise * 0.05)
    return model


def get_model(spec: str, weights: str | Path | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """Build the model a spec names and its default input shape (batch 1)."""
    prefix, sep, name = spec.partition(":")
    if not sep or prefix not in ZOOS:
        raise ModelError(f"model spec {spec!r}: expected one of {sorted(p + ':NAME' for p in ZOOS)}")
    model, shape = ZOOS[prefix](name)
    if weights is not None:
        load_weights(model, weights)
    return model.eval(), shape


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state-dict file (``torch.load(weights_only=True)``: no code runs) into
    ``model``; a missing or unreadable file, or keys/shapes that do not fit, raise ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds for a file that is not a checkpoint
        raise ModelError(f"{path} is not a readable state-dict file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict (name -> tensor)")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not fit {type(model).__name__}: {str(exc).splitlines()[0]} "
                         f"{' '.join(str(exc).splitlines()[1:3]).strip()[:300]}") from None
