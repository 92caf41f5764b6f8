"""torch.distributed helpers shared by the training loop, the method driver and the methods."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["average_", "broadcast_", "distributed"]


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
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
def average_(*tensors: torch.Tensor) -> None:
    """Replace ``tensors`` in place by their mean over ranks (no-op outside torch.distributed)."""
    if not distributed():
        return
    world = dist.get_world_size()
    for t in tensors:
        dist.all_reduce(t)
        t.div_(world)
