"""Figures without pyplot: ``matplotlib.figure.Figure`` objects render to files on any backend, so
fxprune never switches the user's matplotlib backend or keeps figures alive in pyplot's registry."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

__all__ = ["subplots"]


def subplots(*args: Any, figsize: tuple[float, float] | None = None, **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new Figure and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)
