"""Comparison tables and statistics across methods: pure functions on plain records, three table renderers.

A *run* is one method's evaluation at one code length and seed::

    {"method": LABEL, "bits": 32, "seed": 0, "mAP": {"100": .., "1000": .., "all": ..}, "mAP_expected": {...}}

Labels are any strings (the eleven methods, labelled variants such as "shc-paper", external codes); external codes
carry the seed whose split they were made for. Cut-off keys are compared as strings (``100`` and ``"100"`` are one
cut-off).
numpy only (scipy is imported by the two statistics that need it), so ``shc-eval`` stays torch-free.
"""
from __future__ import annotations

import csv
import io
import math
import os

import numpy as np

FAMILIES = (("mAP", "index"), ("mAP_expected", "tie-aware"))  # run key, the tie convention's name in tables
# The seed's figures' methods, in their legend order (also the order of table rows); other labels follow.
SEED_METHODS = ("shc", "mds", "csq", "vtdh", "lth", "greedyhash", "orthohash", "dtsh", "hashnet", "dpsh", "idhn")
TABLE_SUFFIXES = (".md", ".csv", ".tex")


def method_order(labels) -> list[str]:
    """Distinct labels, the seed's methods first in the seed's order (by lower-case name), then the others in
    order of first appearance."""
    labels = list(dict.fromkeys(labels))
    seed = sorted((lb for lb in labels if lb.lower() in SEED_METHODS), key=lambda lb: SEED_METHODS.index(lb.lower()))
    return seed + [lb for lb in labels if lb.lower() not in SEED_METHODS]


# ------------------------------------------------------------------------------------------------ statistics

def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def t_interval(values, level: float = 0.95) -> list[float] | None:
    """Two-sided Student-t confidence interval for the mean, ``[low, high]``; None for fewer than two values
    (no spread to estimate). Two values are defined (1 degree of freedom, t = 12.71 at 95 %): wide, but honest."""
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    mean, std = mean_std(v)
    half = float(t.ppf(0.5 + level / 2, v.size - 1)) * std / math.sqrt(v.size)
    return [mean - half, mean + half]


def paired_differences(runs: list[dict], method: str, baseline: str) -> list[dict]:
    """method − baseline per length and cut-off, paired by seed (same split, same initial network): mean and std
    of the per-seed differences, their 95 % t-interval (None with one seed), and how many seeds the method won
    and lost. Lengths where the pair shares no seed are left out."""
    by_key = {(r["method"], r["bits"], r["seed"]): r for r in runs}
    rows = []
    for bits in sorted({r["bits"] for r in runs}):
        seeds = sorted(s for (m, b, s) in by_key if m == method and b == bits and (baseline, bits, s) in by_key)
        if not seeds:
            continue
        row = {"method": method, "baseline": baseline, "bits": bits, "seeds": seeds}
        for family, _ in FAMILIES:
            row[family] = {}
            for k in by_key[(method, bits, seeds[0])][family]:
                diffs = [by_key[(method, bits, s)][family][k] - by_key[(baseline, bits, s)][family][k] for s in seeds]
                mean, std = mean_std(diffs)
                row[family][k] = {"mean": mean, "std": std, "ci95": t_interval(diffs),
                                  "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}
        rows.append(row)
    return rows


def gains_over_others(runs: list[dict], reference: str = "shc") -> list[dict]:
    """paired_differences of ``reference`` against every other label, in method_order; [] without the reference."""
    labels = method_order(r["method"] for r in runs)
    if reference not in labels:
        return []
    return [row for other in labels if other != reference for row in paired_differences(runs, reference, other)]


def wilcoxon_across_queries(per_query_ap: dict, reference: str = "shc") -> list[dict]:
    """Paired Wilcoxon signed-rank test (two-sided, scipy.stats.wilcoxon, zero differences dropped) of the
    reference's per-query AP against every other label's, per length and cut-off.

    ``per_query_ap``: ``{(label, bits, seed): {cutoff: AP of every query}}``. The seed draws the query split, so
    queries are paired only within a seed: the test runs on the concatenated (seed, query) pairs of the seeds both
    labels have (averaging a query's AP over seeds would average different queries). ``p_value`` is None when
    every difference is zero (identical rankings: nothing to test)."""
    from scipy.stats import wilcoxon

    labels = method_order(label for label, _, _ in per_query_ap)
    rows = []
    for other in (lb for lb in labels if lb != reference):
        for bits in sorted({b for _, b, _ in per_query_ap}):
            seeds = sorted(s for (m, b, s) in per_query_ap if m == reference and b == bits
                           and (other, bits, s) in per_query_ap)
            if not seeds:
                continue
            ours = [per_query_ap[(reference, bits, s)] for s in seeds]
            theirs = [per_query_ap[(other, bits, s)] for s in seeds]
            for k in ours[0]:
                a = np.concatenate([np.asarray(x[k], dtype=np.float64) for x in ours])
                b = np.concatenate([np.asarray(x[k], dtype=np.float64) for x in theirs])
                if a.shape != b.shape:
                    raise ValueError(f"{reference} and {other} at {bits} bits were evaluated on different numbers "
                                     f"of queries ({a.size} vs {b.size}): per-query AP cannot be paired")
                diff = a - b
                row = {"method": reference, "baseline": other, "bits": bits, "cutoff": str(k), "seeds": seeds,
                       "n_pairs": int(diff.size), "n_nonzero": int(np.count_nonzero(diff)),
                       "mean_difference": float(diff.mean()), "median_difference": float(np.median(diff)),
                       "statistic": None, "p_value": None}
                if row["n_nonzero"]:
                    result = wilcoxon(a, b)
                    row["statistic"], row["p_value"] = float(result.statistic), float(result.pvalue)
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ the table

def table_cells(runs: list[dict], cutoffs=None, families=FAMILIES) -> list[dict]:
    """The comparison table as one record per (tie convention, method, bits, cut-off): mean ± sample std over
    the runs (seeds), n, and ``best`` (the highest mean at that length, convention and cut-off; equal means all
    count). ``cutoffs``: which cut-offs, in this order (default: the first run's), e.g. ``(100, 1000, "all")``
    or COCO's ``(5000,)``. ``families``: ``(run key, convention name)`` pairs (default: index and tie-aware).
    Rows come in method_order, lengths ascending."""
    if not runs:
        return []
    cutoffs = [str(k) for k in (cutoffs if cutoffs is not None else runs[0][families[0][0]])]
    for r in runs:
        missing = [k for k in cutoffs if k not in r[families[0][0]]]
        if missing:
            raise ValueError(f"{r['method']} at {r['bits']} bits has no mAP@{', @'.join(missing)} "
                             f"(it has @{', @'.join(r[families[0][0]])})")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["bits"]), []).append(r)
    cells = []
    for family, ties in families:
        for method in method_order(r["method"] for r in runs):
            for bits in sorted({r["bits"] for r in runs}):
                group = groups.get((method, bits))
                for k in cutoffs:
                    if group:
                        mean, std = mean_std([r[family][k] for r in group])
                        cells.append({"ties": ties, "method": method, "bits": bits, "cutoff": k, "mean": mean,
                                      "std": std, "n": len(group)})
    best: dict[tuple, float] = {}
    for c in cells:
        slot = (c["ties"], c["bits"], c["cutoff"])
        best[slot] = max(best.get(slot, -math.inf), c["mean"])
    for c in cells:
        c["best"] = c["mean"] == best[(c["ties"], c["bits"], c["cutoff"])]
    return cells


def index_cells(cells: list[dict]) -> dict:
    """``{(ties, method, bits, cutoff): cell}``."""
    return {(c["ties"], c["method"], c["bits"], c["cutoff"]): c for c in cells}


def _layout(cells: list[dict]):
    """The wide form the Markdown and LaTeX renderers share: conventions, methods, (bits, cut-off) columns and
    index_cells."""
    ties = list(dict.fromkeys(c["ties"] for c in cells))
    methods = list(dict.fromkeys(c["method"] for c in cells))
    bits = sorted({c["bits"] for c in cells})
    cutoffs = list(dict.fromkeys(c["cutoff"] for c in cells))
    return ties, methods, [(b, k) for b in bits for k in cutoffs], index_cells(cells)


def format_cell(cell: dict | None, plus_minus: str, bold: str, missing: str = "–") -> str:
    """``mean<plus_minus>std`` (the mean alone for one run), put into ``bold`` (a format string) when best."""
    if cell is None:
        return missing
    text = f"{cell['mean']:.4f}" + ("" if cell["std"] is None else f"{plus_minus}{cell['std']:.4f}")
    return bold.format(text) if cell["best"] else text


def markdown_table(cells: list[dict]) -> str:
    """One Markdown table per tie convention: a row per method, a column per (bits, cut-off); best in bold."""
    ties, methods, columns, at = _layout(cells)
    lines = []
    for t in ties:
        header = ["method"] + [f"{b} bits mAP@{k}" for b, k in columns]
        lines += [f"**{t} ties**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for m in methods:
            values = [format_cell(at.get((t, m, b, k)), " ± ", "**{}**") for b, k in columns]
            lines.append("| " + " | ".join([m] + values) + " |")
        lines.append("")
    return "\n".join(lines)


def csv_table(cells: list[dict]) -> str:
    """Tidy CSV: one line per (ties, method, bits, cut-off) with mean, std (empty for one run), n and best."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ties", "method", "bits", "cutoff", "mean", "std", "n", "best"])
    for c in cells:
        writer.writerow([c["ties"], c["method"], c["bits"], c["cutoff"], repr(c["mean"]),
                         "" if c["std"] is None else repr(c["std"]), c["n"], int(c["best"])])
    return buf.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex_table(cells: list[dict]) -> str:
    """A booktabs tabular per tie convention (needs ``\\usepackage{booktabs}``): lengths as column groups, cut-offs
    below them, a row per method; best in bold."""
    if not cells:
        return ""
    ties, methods, columns, at = _layout(cells)
    bits = list(dict.fromkeys(b for b, _ in columns))
    per_bits = len(columns) // len(bits)
    out = []
    for t in ties:
        out += [f"% mAP, {t} ties; mean $\\pm$ sample std over seeds; best per column in bold",
                r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule"]
        out.append(" & ".join(["Method"] + [rf"\multicolumn{{{per_bits}}}{{c}}{{{b} bits}}" for b in bits]) + r" \\")
        out.append(" ".join(rf"\cmidrule(lr){{{2 + i * per_bits}-{1 + (i + 1) * per_bits}}}"
                            for i in range(len(bits))))
        out.append(" & ".join([""] + [f"@{latex_escape(k)}" for _, k in columns]) + r" \\")
        out.append(r"\midrule")
        for m in methods:
            values = [format_cell(at.get((t, m, b, k)), r" $\pm$ ", r"\textbf{{{}}}", "--") for b, k in columns]
            out.append(" & ".join([latex_escape(m)] + values) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


RENDERERS = {".md": markdown_table, ".csv": csv_table, ".tex": latex_table}


def check_table_path(path: str, option: str = "table") -> str:
    """The renderer's suffix of ``path`` or a one-line ValueError naming the suffixes it can write."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in RENDERERS:
        raise ValueError(f"{option} {path}: cannot write a table as '{suffix or '(no suffix)'}'; "
                         f"give a file ending in {', '.join(TABLE_SUFFIXES)}")
    return suffix


def render_table(cells: list[dict], path: str, option: str = "table") -> str:
    """The table as the text that ``path``'s suffix (.md, .csv, .tex) asks for."""
    return RENDERERS[check_table_path(path, option)](cells)
