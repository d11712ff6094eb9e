"""Precision-recall and mAP-vs-bits figures (matplotlib with the Agg backend, imported only when a plot is drawn).

The format follows the file name's suffix (.png, .pdf, .svg: whatever matplotlib writes).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

# The seed's colours for its eleven methods (by lower-case label); shc.report_tables.SEED_METHODS is their order.
SEED_COLOURS = {"shc": "red", "mds": "green", "csq": "blue", "vtdh": "brown", "lth": "magenta",
                "greedyhash": "olive", "orthohash": "pink", "dtsh": "lightgreen", "hashnet": "orange",
                "dpsh": "purple", "idhn": "cyan"}
# Other labels (variants, external codes): Okabe & Ito's colour-blind-safe palette, dashed to set them apart.
OTHER_COLOURS = ("#000000", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


def method_styles(labels) -> dict:
    """``{label: {"color", "linestyle"}}``: a seed method's own colour, solid; every other label the next colour of
    the colour-blind-safe palette (cycling), dashed."""
    styles, others = {}, 0
    for label in dict.fromkeys(labels):
        colour = SEED_COLOURS.get(str(label).lower())
        if colour is None:
            colour, others = OTHER_COLOURS[others % len(OTHER_COLOURS)], others + 1
            styles[label] = {"color": colour, "linestyle": "--"}
        else:
            styles[label] = {"color": colour, "linestyle": "-"}
    return styles


# Sized for one column of a two-column paper (about 3.5 in wide) at 1:1, so the fonts stay readable when printed.
PAPER_STYLE = {"font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
               "legend.fontsize": 6.5, "lines.linewidth": 1.2}


@contextmanager
def _figure(path, size, title: str):
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with plt.rc_context(PAPER_STYLE):
        fig, ax = plt.subplots(figsize=size, dpi=300)
        try:
            yield ax
            if title:
                ax.set_title(textwrap.fill(title, 46))
            fig.tight_layout()
            fig.savefig(path)
        finally:
            plt.close(fig)


def _legend(ax, n: int, outside: bool = False) -> None:
    """Inside, in two columns when long (a PR plot's lower left is mostly empty); or outside on the right, for
    lines that fill the whole plot."""
    where = {"loc": "center left", "bbox_to_anchor": (1.01, 0.5)} if outside else {"loc": "best"}
    ax.legend(**where, ncol=2 if n > 6 and not outside else 1, framealpha=0.85, handlelength=2.0, borderpad=0.3,
              labelspacing=0.2, columnspacing=0.8)


def plot_pr_curves(curves: dict, path, title: str = "", styles: dict | None = None) -> str:
    """Draw one precision-recall curve per label and save it at `path` (folders are created).

    ``curves``: ``{label: (precision, recall)}`` with equal-length sequences, drawn and listed in this order.
    ``styles``: ``{label: matplotlib line options}`` (method_styles); default: matplotlib's cycle, with markers.
    Returns the path written.
    """
    if not curves:
        raise ValueError("plot_pr_curves: no curves given")
    for label, pair in curves.items():
        if len(pair) != 2 or len(pair[0]) != len(pair[1]) or len(pair[0]) == 0:
            raise ValueError(f"plot_pr_curves: curve {label!r} needs (precision, recall) of equal, non-zero length")
    with _figure(path, (3.6, 3.2), title) as ax:
        for label, (precision, recall) in curves.items():
            style = (styles or {}).get(label) or {"marker": ".", "markersize": 2.5}
            ax.plot(recall, precision, label=str(label), **style)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        _legend(ax, len(curves))
    return os.fspath(path)


def plot_map_vs_bits(series: dict, path, title: str = "", ylabel: str = "mAP", styles: dict | None = None) -> str:
    """mAP against code length, one line per label with ± std error bars where there are several seeds.

    ``series``: ``{label: {bits: (mean, std or None)}}``, drawn and listed in this order. Returns the path."""
    if not series or not any(series.values()):
        raise ValueError("plot_map_vs_bits: no values given")
    with _figure(path, (4.3, 2.9), title) as ax:
        all_bits = sorted({b for points in series.values() for b in points})
        for label, points in series.items():
            bits = sorted(points)
            means = [points[b][0] for b in bits]
            stds = [points[b][1] or 0.0 for b in bits]
            style = (styles or {}).get(label) or {}
            ax.errorbar(bits, means, yerr=stds, marker="o", markersize=3, capsize=2, label=str(label), **style)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_bits)
        ax.set_xticklabels([str(b) for b in all_bits])
        ax.minorticks_off()
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _legend(ax, len(series), outside=True)
    return os.fspath(path)
