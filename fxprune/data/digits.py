"""scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes) as 32x32 images.

The 8x8 images are upsampled bilinearly to 32x32, scaled to [0, 1], normalised with the
training split's mean and std and repeated to 3 channels, so CIFAR networks run on them
unchanged. The split is fixed (stratified 60 / 20 / 20 train / val / test, seed 0). Light
augmentation for training: random translation by up to 2 pixels (zero padding + crop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["DigitsSplits", "Shifted", "digits", "digits_loaders"]


@dataclass
class DigitsSplits:
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset


def digits(size: int = 32, channels: int = 3) -> DigitsSplits:
    """The fixed train / val / test split (tensors: N x channels x size x size, labels int64)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target, dtype=torch.int64)
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.4, stratify=d.target, random_state=0)
    val, test = train_test_split(rest, test_size=0.5, stratify=d.target[rest], random_state=0)
    mean, std = x[train].mean(), x[train].std()
    x = ((x - mean) / std).repeat(1, channels, 1, 1)
    t = lambda i: TensorDataset(x[torch.from_numpy(i)], y[torch.from_numpy(i)])  # noqa: E731
    return DigitsSplits(t(train), t(val), t(test))


class Shifted(Dataset):
    """Random translation by up to ``shift`` pixels (zero padding), deterministic per seed/epoch."""

    def __init__(self, base: TensorDataset, shift: int = 2, seed: int = 0) -> None:
        self.base, self.shift, self.seed, self.epoch = base, shift, seed, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        dx, dy = (torch.randint(-self.shift, self.shift + 1, (2,), generator=g)).tolist()
        s = self.shift
        padded = F.pad(x, (s, s, s, s))
        h, w = x.shape[-2:]
        return padded[..., s + dy:s + dy + h, s + dx:s + dx + w], y


def digits_loaders(batch_size: int = 64, *, augment: bool = True, seed: int = 0, size: int = 32,
                   channels: int = 3) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) loaders; the train loader shuffles with ``seed`` and augments."""
    s = digits(size, channels)
    train = Shifted(s.train, seed=seed) if augment else s.train
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size, shuffle=True, generator=g),
            DataLoader(s.val, batch_size * 4), DataLoader(s.test, batch_size * 4))
