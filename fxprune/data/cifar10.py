"""CIFAR-10 from a local ``cifar-10-batches-py`` folder (the python version of the dataset;
fxprune never downloads it)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["MEAN", "STD", "cifar10"]

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")  # the official format is a pickled dict of arrays
    return np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"], dtype=np.int64)


def cifar10(root: str | Path) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) normalised tensors from ``root`` (the folder holding data_batch_1..5 and
    test_batch, or its parent)."""
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    files = [root / f"data_batch_{i}" for i in range(1, 6)]
    missing = [str(f) for f in files + [root / "test_batch"] if not f.exists()]
    if missing:
        raise FileNotFoundError(f"not a CIFAR-10 python folder (missing {missing[:2]}); fxprune does not download "
                                "datasets: point it at an extracted cifar-10-python.tar.gz")
    parts = [_read(f) for f in files]
    xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    xte, yte = _read(root / "test_batch")
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    norm = lambda x: (torch.from_numpy(x).float() / 255 - mean) / std  # noqa: E731
    return TensorDataset(norm(xtr), torch.from_numpy(ytr)), TensorDataset(norm(xte), torch.from_numpy(yte))
