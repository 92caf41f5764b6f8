"""A user's own model file, named on the command line as ``tests/data/my_model.py:build``."""

import torch
from torch import nn


def build():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 4))
    return model, (1, 3, 16, 16)


def tensor_example():
    return build()[0], torch.randn(2, 3, 12, 12)


NOT_CALLABLE = 3
