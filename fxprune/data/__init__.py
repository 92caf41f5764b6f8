"""Datasets that need no download: scikit-learn's digits at 32x32, and a reader for a CIFAR-10
folder the user already has."""

from .cifar10 import cifar10
from .digits import DigitsSplits, digits, digits_loaders

__all__ = ["DigitsSplits", "cifar10", "digits", "digits_loaders"]
