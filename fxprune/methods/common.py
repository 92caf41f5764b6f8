"""Helpers shared by the training-time methods: optimizer-state surgery and DDP broadcast."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def broadcast_(*tensors: torch.Tensor, src: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s values (no-op outside torch.distributed)."""
    if not distributed():
        return
    for t in tensors:
        buf = t.to(torch.uint8) if t.dtype == torch.bool else t
        dist.broadcast(buf, src)
        if buf is not t:
            t.copy_(buf.to(t.dtype))


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
