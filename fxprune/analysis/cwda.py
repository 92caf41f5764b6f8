"""The convolution-weight-distribution assumption: are a layer's filter weights Gaussian?

For every convolution with at least ``min_size`` weights: the fitted Gaussian (mean, sigma), and
three normality tests of the weights (scipy.stats) — Shapiro-Wilk (on a fixed random subsample of
at most 5000 weights, the test's valid range), D'Agostino-Pearson K^2, and Kolmogorov-Smirnov
against the fitted Gaussian (parameters estimated from the same data, so the KS p-value is
conservative). A layer *passes* a test when p >= alpha. Q-Q data: sample quantiles of the
standardised weights against standard-normal quantiles at 49 probability levels.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from torch import nn

__all__ = ["QQ_LEVELS", "SHAPIRO_MAX", "cwda", "layer_tests"]

QQ_LEVELS = np.linspace(0.02, 0.98, 49)
SHAPIRO_MAX = 5000


def layer_tests(w: np.ndarray, alpha: float, rng: np.random.Generator) -> dict:
    w = np.asarray(w, dtype=np.float64).ravel()
    mu, sigma = float(w.mean()), float(w.std())
    sub = w if w.size <= SHAPIRO_MAX else rng.choice(w, SHAPIRO_MAX, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shapiro = float(stats.shapiro(sub).pvalue)
        dagostino = float(stats.normaltest(w).pvalue)
        ks = float(stats.kstest(w, "norm", args=(mu, sigma if sigma > 0 else 1.0)).pvalue)
    z = (w - mu) / sigma if sigma > 0 else w - mu
    return {"n": int(w.size), "mean": mu, "sigma": sigma,
            "shapiro_p": shapiro, "dagostino_p": dagostino, "ks_p": ks,
            "pass": {"shapiro": shapiro >= alpha, "dagostino": dagostino >= alpha, "ks": ks >= alpha},
            "qq": {"theoretical": stats.norm.ppf(QQ_LEVELS).tolist(), "sample": np.quantile(z, QQ_LEVELS).tolist()}}


def cwda(model: nn.Module, *, alpha: float = 0.05, seed: int = 0, min_size: int = 20) -> dict:
    rng = np.random.default_rng(seed)
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.weight.numel() >= min_size:
            res = layer_tests(m.weight.detach().cpu().numpy(), alpha, rng)
            layers.append({"name": name, **res})
    rate = {t: (float(np.mean([layer["pass"][t] for layer in layers])) if layers else None)
            for t in ("shapiro", "dagostino", "ks")}
    return {"alpha": alpha, "layers": layers, "pass_rate": rate}
