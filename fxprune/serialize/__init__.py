"""Pruned models as data: graphs, leaf modules and tensors, never code (``.fxp`` files, pickling).

A ``.fxp`` file is ``torch.save({"format", "spec", "tensors"})``: ``spec`` is JSON text holding the
graphs as data, the leaf modules as (class, attributes), the report and the resolution; ``tensors``
are the weights. It is read with ``torch.load(weights_only=True)``, so nothing is unpickled as code.

What ``load(path)`` (``trusted=False``) guarantees: before any code is generated, every name that
reaches the generated ``forward`` source is checked against a strict grammar (identifiers; dotted
paths of ``[A-Za-z0-9_]+`` without dunders), every called function is looked up in an explicit
table of tensor ops (``fxprune.safelist``: torch, ``torch.nn.functional``, ``operator`` arithmetic,
``math``, ``torchvision.ops``) by its exact name — nothing is imported or traversed from a name in
the file —, every method call must be a tensor method from an allow-list, attribute reads a short
list (``shape``, ``dtype``, ...), and module classes come from an allow-list (``torch.nn``,
``torchvision.ops``, parametrizations, fxprune's channel-aligned modules) and are built without
running their ``__init__``. Any violation, and any corrupt file, raises ``SerializationError``
naming what was refused. A custom module or function is stored pickled / by import path and is only
loaded with ``trusted=True`` — which runs code from the file, like ``torch.load``.
"""

from .state import from_state, to_state

__all__ = ["from_state", "to_state"]
