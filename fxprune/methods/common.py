"""Optimizer-state surgery shared by the training-time methods."""

from __future__ import annotations

import torch

__all__ = ["zero_optimizer_state_"]


@torch.no_grad()
def zero_optimizer_state_(optimizer: torch.optim.Optimizer, p: torch.Tensor, axis: int, pos: torch.Tensor) -> None:
    """Zero the entries ``pos`` along ``axis`` of every per-parameter state tensor of ``p``
    (momentum, Adam moments, ...) that has ``p``'s shape."""
    state = optimizer.state.get(p)
    if not state:
        return
    for v in state.values():
        if torch.is_tensor(v) and v.shape == p.shape:
            v.index_fill_(axis, pos, 0)
