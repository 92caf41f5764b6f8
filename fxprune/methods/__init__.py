"""Training-time pruning methods on the soft (gate) pass: GHFP (with SFP and HFP as its ends)
and DAIS. Both own a private gated copy of the model (``method.model``), act through hook
methods any training loop can call, and ``finalize()`` into the physically smaller model."""

from .dais import DAIS, RelaxedGatedModel
from .ghfp import GHFP


def sfp(model, example_inputs, **kwargs) -> GHFP:
    """Soft filter pruning: GHFP with ``hardness="soft"``."""
    return GHFP(model, example_inputs, hardness="soft", **kwargs)


def hfp(model, example_inputs, **kwargs) -> GHFP:
    """Hard filter pruning: GHFP with ``hardness="hard"``."""
    return GHFP(model, example_inputs, hardness="hard", **kwargs)


__all__ = ["DAIS", "GHFP", "RelaxedGatedModel", "hfp", "sfp"]
