"""Latency vs MACs plots of benchmark results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..plotting import subplots

__all__ = ["plot_latency"]


def plot_latency(results: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """One point per (model, dense/pruned, backend): x = MACs (G, at the benchmark batch's
    compile example), y = median latency (ms); dense and pruned of one model joined by a line."""
    fig, ax = subplots(figsize=(7, 4.5))
    markers = "osD^v<>p*"
    backends = sorted({b for r in results for b in r["backends"]})
    for r in results:
        for i, name in enumerate(backends):
            b = r["backends"].get(name)
            if b is None:
                continue
            xs = [r["macs_dense"] / 1e9, r["macs_pruned"] / 1e9]
            ys = [b["dense"]["median_ms"], b["pruned"]["median_ms"]]
            label = f"{r.get('model', '')} {name}".strip()
            ax.plot(xs, ys, marker=markers[i % len(markers)], label=f"{label} ({b['speedup']:.2f}x)")
    ax.set_xlabel("GMACs (compile example)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title(title or f"dense -> pruned, batch {results[0]['batch']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
