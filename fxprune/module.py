"""The compiled artifact: ``PrunedGraphModule`` (a two-graph GraphModule carrying its report),
and its files: ``save`` / ``load`` of ``.fxp`` files, which hold data, never code
(see ``fxprune.serialize``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .capture.graph_module import RESERVED_NAMES, DualGraphModule
from .errors import SerializationError
from .report import REPORT_KEY, RESOLUTION_KEY
from .serialize import from_state, to_state

__all__ = ["REPORT_KEY", "RESOLUTION_KEY", "PrunedGraphModule", "load", "save"]



class PrunedGraphModule(DualGraphModule):
    """What ``fxprune.compile`` returns: a GraphModule (with a train-mode graph when the model
    branches on ``self.training``) whose ``meta`` holds the report and the resolution. Pickles
    through fxprune's data-only state (``torch.save`` of the model never stores code)."""

    def __reduce__(self):
        return (_rebuild, (to_state(self),))

    @property
    def fxprune_report(self):
        return self.meta.get(REPORT_KEY)


def _rebuild(state: Any) -> nn.Module:
    return from_state(state, cls=PrunedGraphModule)


assert {n for n in dir(PrunedGraphModule) if n not in dir(nn.Module)} <= RESERVED_NAMES | {"__reduce__"}


def save(model: nn.Module, path: str | Path) -> None:
    """Write a compiled model to ``path`` (a ``.fxp`` file; see the module docstring)."""
    state = to_state(model)
    parent = Path(path).parent
    if not parent.is_dir():
        raise SerializationError(f"cannot save to {path}: the directory {parent} does not exist")
    try:
        torch.save(state, path)
    except OSError as exc:
        raise SerializationError(f"cannot save to {path}: {exc.strerror or exc}") from None


def load(path: str | Path, *, trusted: bool = False, map_location: Any = None, into: nn.Module | None = None) -> nn.Module:
    """Read a model written by ``save``. Never unpickles code unless ``trusted=True``. A model
    pruned on the run capture keeps its own forward, so its file holds only its pruned layers:
    pass ``into=`` the dense model it was pruned from (a pruned copy is returned; ``into`` is
    not modified)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SerializationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SerializationError(f"{path} is a directory, not an fxprune file") from None
    except Exception as exc:
        raise SerializationError(f"{path} is not a readable fxprune file: {exc}") from exc
    return from_state(state, trusted=trusted, cls=PrunedGraphModule, into=into)
