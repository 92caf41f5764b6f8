"""PNG plots of a CriteriaAnalysis (matplotlib Figures: no display, the user's backend untouched)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..plotting import subplots

__all__ = ["save_plots"]

if TYPE_CHECKING:
    from . import CriteriaAnalysis


def _heat(ax, m, names, title):
    arr = np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)
    im = ax.imshow(arr, vmin=-1 if "rank" in title else 0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(arr[i, j]):
                ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", color="w" if arr[i, j] < 0.6 else "k",
                        fontsize=8)
    ax.set_title(title, fontsize=10)
    return im


def save_plots(a: CriteriaAnalysis, out: Path) -> list[Path]:
    files = []
    names = a.similarity["names"]
    layer_idx = np.arange(len(a.layers))

    if len(names) >= 2:
        fig, axes = subplots(1, 4, figsize=(21, 4.8), gridspec_kw={"wspace": 0.45})
        mats = a.similarity["matrix"]
        for ax, (key, title) in zip(axes, [("spearman", "Spearman rank corr. (mean over layers)"),
                                            ("kendall", "Kendall rank corr. (mean over layers)"),
                                            ("jaccard_layerwise", f"Jaccard, layer-wise @ {a.sparsity:.0%}"),
                                            ("jaccard_global", f"Jaccard, global @ {a.sparsity:.0%}")]):
            im = _heat(ax, mats[key], names, title)
        fig.colorbar(im, ax=axes, shrink=0.8)
        fig.suptitle(f"{a.model}: similarity of pruning criteria")
        files.append(out / "similarity.png")
        fig.savefig(files[-1], dpi=110, bbox_inches="tight")

        pairs = list(a.similarity["spearman"])
        fig, ax = subplots(figsize=(10, 4))
        for pair in pairs:
            vals = [np.nan if v is None else v for v in a.similarity["spearman"][pair]]
            ax.plot(layer_idx, vals, marker=".", label=pair)
        ax.set_xlabel("layer (channel group, network order)")
        ax.set_ylabel("Spearman rho")
        ax.set_ylim(-1.05, 1.05)
        ax.legend(fontsize=7, ncol=3)
        ax.set_title(f"{a.model}: per-layer rank correlation of criteria")
        files.append(out / "similarity_per_layer.png")
        fig.savefig(files[-1], dpi=110, bbox_inches="tight")

    fig, ax = subplots(figsize=(10, 4))
    sizes = np.array([layer["channels"] for layer in a.layers])
    for name, counts in a.similarity["global_pruned_counts"].items():
        ax.plot(layer_idx, np.array(counts) / sizes, marker=".", label=name)
    ax.set_xlabel("layer (channel group, network order)")
    ax.set_ylabel("fraction pruned")
    ax.set_title(f"{a.model}: per-layer pruned fraction under global pruning at {a.sparsity:.0%}")
    ax.legend(fontsize=8)
    files.append(out / "global_pruned_per_layer.png")
    fig.savefig(files[-1], dpi=110, bbox_inches="tight")

    fig, axes = subplots(1, 2, figsize=(14, 4))
    for name, v in a.applicability["criteria"].items():
        axes[0].plot(layer_idx, [np.nan if x is None else x for x in v["cv"]], marker=".", label=name)
        axes[1].plot(layer_idx, [np.nan if x is None else x for x in v["near_threshold"]], marker=".", label=name)
    axes[0].set_title("coefficient of variation of scores")
    axes[1].set_title(f"fraction within ±{a.applicability['band']:.0%} of the threshold")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.legend(fontsize=8)
    fig.suptitle(f"{a.model}: applicability of criteria")
    files.append(out / "applicability.png")
    fig.savefig(files[-1], dpi=110, bbox_inches="tight")

    layers = a.cwda["layers"]
    if layers:
        fig, axes = subplots(1, 2, figsize=(14, 4))
        idx = np.arange(len(layers))
        axes[0].plot(idx, [layer["sigma"] for layer in layers], marker=".")
        axes[0].set_title("fitted sigma per conv layer")
        for test in ("shapiro", "dagostino", "ks"):
            axes[1].semilogy(idx, [max(layer[f"{test}_p"], 1e-300) for layer in layers], marker=".",
                             label=f"{test} (pass {a.cwda['pass_rate'][test]:.0%})")
        axes[1].axhline(a.cwda["alpha"], color="k", ls="--", lw=1)
        axes[1].set_title(f"normality p-values (alpha = {a.cwda['alpha']})")
        axes[1].legend(fontsize=8)
        for ax in axes:
            ax.set_xlabel("conv layer")
        fig.suptitle(f"{a.model}: convolution weight distribution")
        files.append(out / "cwda.png")
        fig.savefig(files[-1], dpi=110, bbox_inches="tight")

        pick = np.unique(np.linspace(0, len(layers) - 1, min(9, len(layers))).round().astype(int))
        cols = 3
        rows = -(-len(pick) // cols)
        fig, axes = subplots(rows, cols, figsize=(11, 3.3 * rows), squeeze=False)
        for ax, i in zip(axes.ravel(), pick):
            q = layers[i]["qq"]
            ax.plot(q["theoretical"], q["sample"], ".", ms=4)
            lim = max(abs(min(q["theoretical"])), abs(max(q["theoretical"])))
            ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
            ax.set_title(layers[i]["name"], fontsize=8)
        for ax in axes.ravel()[len(pick):]:
            ax.axis("off")
        fig.suptitle(f"{a.model}: Q-Q plots of standardised conv weights vs N(0, 1)")
        fig.tight_layout()
        files.append(out / "qq.png")
        fig.savefig(files[-1], dpi=100, bbox_inches="tight")
    return files
