"""Precision-recall figures (matplotlib with the Agg backend, imported only when a plot is drawn)."""
from __future__ import annotations

import os
from pathlib import Path

from shc.atomic import atomic_write


def plot_pr_curves(curves: dict, path, title: str = "") -> str:
    """Draw one precision-recall curve per label and save a PNG at `path` (folders are created).

    ``curves``: ``{label: (precision, recall)}`` with equal-length sequences. Returns the path written.
    """
    if not curves:
        raise ValueError("plot_pr_curves: no curves given")
    for label, pair in curves.items():
        if len(pair) != 2 or len(pair[0]) != len(pair[1]) or len(pair[0]) == 0:
            raise ValueError(f"plot_pr_curves: curve {label!r} needs (precision, recall) of equal, non-zero length")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    try:
        for label, (precision, recall) in curves.items():
            ax.plot(recall, precision, marker=".", markersize=3, linewidth=1.2, label=str(label))
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if title:
            ax.set_title(title)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:] or "png"))
    finally:
        plt.close(fig)
    return path
