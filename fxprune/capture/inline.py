"""Layers traced through a functional form instead of kept whole.

``nn.MultiheadAttention`` splits heads inside its C++-backed forward and checks its input width
against ``embed_dim``, so as a leaf it keeps the residual stream and its heads whole. Called as
self-attention without masks and without returned weights (``mha(x, x, x, need_weights=False)``,
torchvision's ViT), it is exactly a packed q/k/v projection, a head split, scaled-dot-product
attention and the output projection; the tracer records those ops on the module's own
parameters, so every op rule applies to them. Other calls keep the module whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import nn

__all__ = ["inline_forward"]


def _mha_self_attention(m: nn.MultiheadAttention) -> Callable[..., Any]:
    def forward(query: Any, key: Any, value: Any, key_padding_mask: Any = None, need_weights: bool = True,
                attn_mask: Any = None, average_attn_weights: bool = True, is_causal: bool = False) -> Any:
        x = query if m.batch_first else query.transpose(0, 1)
        b, n = x.shape[0], x.shape[1]
        qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)
        q, k, v = qkv.reshape(b, n, 3, m.num_heads, m.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=m.dropout if m.training else 0.0, is_causal=is_causal)
        y = F.linear(y.transpose(1, 2).reshape(b, n, m.num_heads * m.head_dim), m.out_proj.weight, m.out_proj.bias)
        return (y if m.batch_first else y.transpose(0, 1)), None

    return forward


def inline_forward(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any] | None:
    """A functional forward equal to ``m(*args, **kwargs)`` that the tracer can trace through,
    or None when ``m`` is kept whole."""
    if type(m) is not nn.MultiheadAttention:
        return None
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
             "is_causal")
    bound = dict(zip(names, args)) | kwargs
    self_attention = bound.get("query") is not None and bound.get("key") is bound.get("query") \
        and bound.get("value") is bound.get("query")
    if (not self_attention or bound.get("key_padding_mask") is not None or bound.get("attn_mask") is not None
            or bound.get("need_weights", True) is not False or bound.get("is_causal", False) is not False
            or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn):
        return None
    return _mha_self_attention(m)
