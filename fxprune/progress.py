"""Progress of long library calls, for whoever shows it.

The library never prints: a long call (``compile``: trace, analyse, score, the backend's rounds,
rewrite, verify; a latency table: one layer after another) names each step with ``step``, and a
caller that shows progress — the CLI's spinner — listens for the duration of the call::

    with progress.listening(lambda message: status.update(f"compiling: {message}")):
        fxprune.compile(model, plan, example_inputs=(x,))

Listeners are per context (``contextvars``): threads and other callers do not see each other's.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["listening", "step"]

log = logging.getLogger(__name__)

_LISTENERS: contextvars.ContextVar[tuple[Callable[[str], None], ...]] = contextvars.ContextVar(
    "fxprune_progress_listeners", default=())


@contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Call ``listener(message)`` for every step named while the block runs."""
    token = _LISTENERS.set(_LISTENERS.get() + (listener,))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def step(message: str) -> None:
    """Name the step a long call is at now (for listeners; logged at debug level)."""
    log.debug("%s", message)
    for listener in _LISTENERS.get():
        listener(message)
