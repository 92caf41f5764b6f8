"""Training-time pruning methods on the soft (gate) pass: GHFP (with SFP and HFP as its ends)
and DAIS; and the one-shot exact zero-channel pruning. GHFP and DAIS own a private gated copy of the model (``method.model``), act through hook
methods any training loop can call, and ``finalize()`` into the physically smaller model."""

from .dais import DAIS, RelaxedGatedModel
from .ghfp import GHFP
from .zero_channel import ZeroChannelResult, zero_channel_prune


def sfp(model, example_inputs, **kwargs) -> GHFP:
    """Soft filter pruning: GHFP with ``hardness="soft"``."""
    return GHFP(model, example_inputs, hardness="soft", **kwargs)


def hfp(model, example_inputs, **kwargs) -> GHFP:
    """Hard filter pruning: GHFP with ``hardness="hard"``."""
    return GHFP(model, example_inputs, hardness="hard", **kwargs)


__all__ = ["DAIS", "GHFP", "RelaxedGatedModel", "ZeroChannelResult", "hfp", "sfp", "zero_channel_prune"]
