"""Joint importance of a skeleton model: a JSON record and a PNG of the skeleton coloured by it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...plotting import subplots

from .data import BONES, JOINTS, REST

__all__ = ["importance_record", "plot_skeleton", "write_importance"]


def importance_record(importance: np.ndarray, joints: Sequence[str], planted: Sequence[int] = (),
                      **extra: Any) -> dict[str, Any]:
    """JSON-able record: joints ranked by importance (mean joint-attention gate), and where the
    planted joints of synthetic data landed in that ranking."""
    order = np.argsort(-importance, kind="stable")
    rank = {int(j): r + 1 for r, j in enumerate(order)}
    rec = {
        "format": "fxprune.joint_importance/1",
        "measure": "joint-attention gate averaged over samples and coordinate channels",
        "joints": [{"joint": joints[j], "index": int(j), "importance": float(importance[j]), "rank": rank[int(j)]}
                   for j in order],
    }
    if planted:
        rec["planted"] = [{"joint": joints[j], "rank": rank[int(j)]} for j in planted]
        rec["planted_in_top_k"] = all(rank[int(j)] <= len(planted) for j in planted)
    rec.update(extra)
    return rec


def write_importance(record: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def plot_skeleton(importance: np.ndarray, path: str | Path, *, joints: Sequence[str] = JOINTS,
                  planted: Sequence[int] = (), title: str = "joint importance (channel attention)") -> Path:
    """The COCO-18 rest pose with joints coloured and sized by importance (18 joints only; other
    layouts get a bar chart)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imp = np.asarray(importance, dtype=float)
    norm = (imp - imp.min()) / (np.ptp(imp) or 1.0)
    if len(imp) == len(JOINTS):
        fig, (ax, bx) = subplots(1, 2, figsize=(10, 5.2), gridspec_kw={"width_ratios": [1, 1.3]})
        for a, b in BONES:
            ax.plot(REST[[a, b], 0], REST[[a, b], 1], color="0.75", lw=3, zorder=1)
        sc = ax.scatter(REST[:, 0], REST[:, 1], c=imp, s=60 + 500 * norm, cmap="inferno_r", edgecolors="k",
                        zorder=2)
        for j in planted:
            ax.scatter(REST[j, 0], REST[j, 1], s=900, facecolors="none", edgecolors="tab:blue", lw=2, zorder=3)
        for j, name in enumerate(joints):
            ax.annotate(name, REST[j], textcoords="offset points", xytext=(8 + 12 * norm[j], -3), fontsize=7)
        ax.set_xlim(REST[:, 0].min() - 0.25, REST[:, 0].max() + 0.55)  # room for the labels
        ax.set_ylim(REST[:, 1].min() - 0.2, REST[:, 1].max() + 0.2)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.axis("off")
        fig.colorbar(sc, ax=ax, shrink=0.7, label="mean attention gate")
        ax.set_title(title + ("\n(blue rings: planted joints)" if planted else ""), fontsize=10)
    else:
        fig, bx = subplots(figsize=(7, 4))
    order = np.argsort(-imp, kind="stable")
    colors = ["tab:blue" if j in set(planted) else "0.5" for j in order]
    bx.barh(range(len(order)), imp[order], color=colors)
    bx.set_yticks(range(len(order)), [joints[j] for j in order], fontsize=7)
    bx.invert_yaxis()
    bx.set_xlabel("mean attention gate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
