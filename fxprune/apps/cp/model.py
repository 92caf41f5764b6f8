"""Skeleton-based cerebral-palsy prediction with channel attention.

Input: N x C x T x V pose sequences (C coordinate channels — x, y, confidence — over T frames and
V joints). The model:

1. ``JointAttention`` — channel attention over the C·V joint-coordinate channels: the sequence is
   viewed as C·V channels over time, average- and max-pooled over time, passed through one shared
   two-layer MLP, summed and squashed by a sigmoid (squeeze-excitation with avg+max pooling, as in
   CBAM's channel branch). The gate multiplies the input; its values, averaged per joint, say which
   joints the classifier uses (``last_attention``, ``joint_importance``).
   Each joint-coordinate trajectory is centred on its mean over time first (the model sees motion,
   not where the body lies in the image).
2. A temporal-convolution backbone: ``TemporalBlock`` = Conv1d over time + BN + ReLU, followed by
   its own ``ChannelAttention`` on the hidden channels, with a residual connection when the width
   does not change. These attention products are what a pruner must get through: the gate's
   channels, the multiplied feature map's and the residual stream's are one channel class.
3. Global average pooling over time and a linear classifier.

``forward`` returns the logits; the gate values of the last forward are kept (detached) in
``model.last_attention`` as N x C x V. Nothing is stored while torch.fx traces the model, so the
traced and pruned graphs are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ...train.loop import fit

__all__ = ["CPAttentionNet", "ChannelAttention", "JointAttention", "TemporalBlock", "evaluate_cp",
           "joint_importance", "train_cp"]


def _tracing() -> bool:
    return fx._symbolic_trace.is_fx_symbolic_tracing() or torch.compiler.is_compiling()


class ChannelAttention(nn.Module):
    """Gate each channel of an N x C x L map by ``sigmoid(mlp(avg_L x) + mlp(max_L x))``."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=2)
        mx = x.amax(dim=2)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(avg))) + self.fc2(F.relu(self.fc1(mx)))).unsqueeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class JointAttention(ChannelAttention):
    """Channel attention over the C·V joint-coordinate channels of an N x C x T x V sequence;
    returns (the gated sequence N x (C·V) x T, the gate N x (C·V) x 1) and keeps the last gate,
    detached, as N x C x V."""

    def __init__(self, in_channels: int, joints: int, reduction: int = 2) -> None:
        super().__init__(in_channels * joints, reduction)
        self.in_channels, self.joints = in_channels, joints
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, t, v = x.shape
        seq = x.permute(0, 1, 3, 2).reshape(n, c * v, t)
        a = self.gate(seq)
        if not _tracing():
            self.last = a.detach().reshape(n, c, v)
        return seq * a, a


class TemporalBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 9, stride: int = 1, reduction: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.attention = ChannelAttention(cout, reduction)
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attention(F.relu(self.bn(self.conv(x))))
        return x + y if self.residual else y


class CPAttentionNet(nn.Module):
    """Channel-attention classifier of pose sequences (N x C x T x V -> N x num_classes)."""

    def __init__(self, in_channels: int = 3, joints: int = 18, num_classes: int = 2,
                 widths: Sequence[int] = (64, 64, 128, 128), strides: Sequence[int] = (1, 1, 2, 1),
                 kernel: int = 9, dropout: float = 0.2) -> None:
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError("widths and strides must have the same length")
        self.in_channels, self.joints = in_channels, joints
        self.joint_attention = JointAttention(in_channels, joints)
        self.input_bn = nn.BatchNorm1d(in_channels * joints)
        blocks, cin = [], in_channels * joints
        for w, s in zip(widths, strides):
            blocks.append(TemporalBlock(cin, w, kernel, s))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_gate(x)[0]

    @property
    def last_attention(self) -> torch.Tensor | None:
        """Joint-attention gate of the last forward, N x C x V (None before the first forward)."""
        return self.joint_attention.last

    def forward_with_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, joint-attention gate N x C·V x 1 with its gradient) — for training terms on
        the gate."""
        seq, gate = self.joint_attention(x - x.mean(dim=2, keepdim=True))
        h = self.blocks(self.input_bn(seq))
        return self.classifier(self.dropout(h.mean(dim=2))), gate


def train_cp(model: CPAttentionNet, train: Any, *, epochs: int = 15, lr: float = 3e-3, batch_size: int = 32,
             attention_l1: float = 0.05, seed: int = 0, weight_decay: float = 1e-4,
             progress: Any = None) -> list[dict[str, float]]:
    """Train in place with Adam (one-cycle learning rate) on cross-entropy + ``attention_l1`` * mean joint-attention gate.

    ``train`` is a ``SkeletonData``; ``progress(epoch, log)`` is called after every epoch."""
    torch.manual_seed(seed)

    def loss_fn(m: CPAttentionNet, xb: torch.Tensor, yb: torch.Tensor):
        logits, gate = m.forward_with_gate(xb)
        return F.cross_entropy(logits, yb) + attention_l1 * gate.mean(), logits, {}

    history = fit(model, lambda epoch: train.batches(batch_size, shuffle=True, seed=seed * 1000 + epoch),
                  epochs=epochs, steps_per_epoch=len(range(0, len(train), batch_size)), loss_fn=loss_fn,
                  optimizer=lambda params: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
                  schedule=lambda opt, steps: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                                                  pct_start=0.2),
                  on_epoch_end=progress, description="cp")
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@torch.no_grad()
def evaluate_cp(model: CPAttentionNet, data: Any, batch_size: int = 128) -> float:
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in data.batches(batch_size))
    return correct / max(1, len(data))


@torch.no_grad()
def joint_importance(model: CPAttentionNet, data: Any, *, coords: Sequence[int] | None = None,
                     batch_size: int = 128) -> np.ndarray:
    """Joint-attention gate averaged over samples and coordinate channels (``coords``: which ones;
    default all), one value per joint."""
    model.eval()
    total, count = None, 0
    for xb, _ in data.batches(batch_size):
        model(xb)
        a = model.last_attention
        if coords is not None:
            a = a[:, list(coords)]
        s = a.mean(dim=1).sum(dim=0)
        total = s if total is None else total + s
        count += a.shape[0]
    return (total / max(1, count)).numpy().astype(np.float64)
