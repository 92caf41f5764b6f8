"""A small reference training loop (SGD + cosine schedule), used by examples and benchmarks.

Training-time pruning methods plug into any loop; this one is here so that the benchmarks and
examples do not each write their own.
"""

from .loop import accuracy, fit, recalibrate_bn

__all__ = ["accuracy", "fit", "recalibrate_bn"]
