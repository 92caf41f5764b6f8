"""Figures without pyplot: ``matplotlib.figure.Figure`` objects render to files on any backend, so
fxprune never switches the user's matplotlib backend or keeps figures alive in pyplot's registry.
matplotlib is the ``analysis`` extra: it is imported when a figure is made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import FxPruneError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MissingExtra", "missing_extra", "subplots"]

# third-party module -> the fxprune extra that installs it
EXTRAS = {"scipy": "analysis", "matplotlib": "analysis", "sklearn": "apps", "skimage": "apps", "PIL": "apps",
          "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "timm": "timm", "transformers": "hf",
          "einops": "hf", "torch_pruning": "bench"}


class MissingExtra(FxPruneError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """The one-line install hint for an ImportError of an optional dependency, or None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    package = {"sklearn": "scikit-learn", "skimage": "scikit-image", "PIL": "Pillow"}.get(name, name)
    return MissingExtra(f"this needs {package}, which is not installed: pip install 'fxprune[{extra}]'")


def subplots(*args: Any, figsize: tuple[float, float] | None = None, **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new Figure and its axes."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise (missing_extra(exc) or exc) from None
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)
