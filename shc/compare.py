"""shc-compare's grid: every (centers, bits, seed) cell trained with the same budget, then mean ± std per method
and code length under both tie conventions, a results table and one PR-curve figure per length.

The pure parts (``plan_grid``, ``run_record``, ``summarize``, ``mean_pr_curve``, ``results_markdown``) take plain
data and are tested in milliseconds; ``run_grid`` drives ``shc.train.run_pipeline`` over the grid. A cell whose
run directory already holds a finished ``metrics.json`` for the same configuration is read back, not retrained,
so an interrupted grid is continued by rerunning the command, and two processes may split a grid between them
(a final run over the whole grid then only aggregates).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

TIES = (("mAP", "index"), ("mAP_expected", "tie-aware"))  # result key, label in tables
# Options that say where/how a run is written, not what it computes: ignored when matching finished runs.
_NOT_IDENTITY = ("out", "progress", "resume", "stage1_cache", "threads", "workers", "image_cache", "device",
                 "dist_timeout")


@dataclasses.dataclass(frozen=True)
class Cell:
    centers: str
    bits: int
    seed: int

    def dirname(self) -> str:
        return f"{self.centers}-{self.bits}bits-seed{self.seed}"


def plan_grid(centers: Iterable[str], bits: Iterable[int], seeds: Iterable[int]) -> list[Cell]:
    """All cells, seed-major (each seed's stage 1 is trained once, by its first shc cell, then reused),
    then length, then method. Raises ValueError on unknown methods, bad lengths/seeds or duplicates."""
    from shc.centers import METHODS

    centers, bits, seeds = list(centers), list(bits), list(seeds)
    for name, values in (("centers", centers), ("bits", bits), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{name}: give at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"{name}: duplicate values in {values}")
    for c in centers:
        if c not in METHODS:
            raise ValueError(f"unknown center method {c!r}; choose from {', '.join(METHODS)}")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"bits must be positive integers, got {b!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
    return [Cell(c, b, s) for s in seeds for b in bits for c in centers]


def run_record(metrics: dict) -> dict:
    """One results.json entry from a run's metrics.json content."""
    report = metrics.get("center_report") or {}
    return {"centers": metrics["centers"], "bits": int(metrics["bits"]), "seed": int(metrics["seed"]),
            "mAP": dict(metrics["mAP"]), "mAP_expected": dict(metrics["mAP_expected"]),
            "seconds": dict(metrics["seconds"]),
            "center_distance": {k: report.get(k) for k in ("min_distance", "mean_distance", "d_required")},
            "classifier_accuracy": (metrics.get("stage1") or {}).get("query_accuracy")}


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def summarize(runs: list[dict]) -> list[dict]:
    """Mean ± std over seeds for each (centers, bits), in order of first appearance (bits, then method)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["bits"], r["centers"]), []).append(r)
    rows = []
    for (bits, centers), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
        row = {"centers": centers, "bits": bits, "n": len(group), "seeds": sorted(r["seed"] for r in group),
               "seconds": mean_std([r["seconds"]["total"] for r in group])[0]}
        for key, _ in TIES:
            cutoffs = group[0][key].keys()
            row[key] = {k: dict(zip(("mean", "std"), mean_std([r[key][k] for r in group]))) for k in cutoffs}
        rows.append(row)
    return rows


def paired_differences(runs: list[dict], method: str, baseline: str) -> list[dict]:
    """method − baseline per length and cut-off, paired by seed (same split, same initial network): mean ± std of
    the differences and how many seeds the method won. Lengths where the pair shares no seed are left out."""
    by_key = {(r["centers"], r["bits"], r["seed"]): r for r in runs}
    rows = []
    for bits in sorted({r["bits"] for r in runs}):
        seeds = sorted(s for (c, b, s) in by_key if c == method and b == bits and (baseline, bits, s) in by_key)
        if not seeds:
            continue
        row = {"method": method, "baseline": baseline, "bits": bits, "seeds": seeds}
        for key, _ in TIES:
            row[key] = {}
            for k in by_key[(method, bits, seeds[0])][key]:
                diffs = [by_key[(method, bits, s)][key][k] - by_key[(baseline, bits, s)][key][k] for s in seeds]
                mean, std = mean_std(diffs)
                row[key][k] = {"mean": mean, "std": std, "wins": sum(d > 0 for d in diffs),
                               "losses": sum(d < 0 for d in diffs)}
        rows.append(row)
    return rows


def mean_pr_curve(curves: list[dict]) -> tuple[list[float], list[float]]:
    """Pointwise mean over seeds of rank-based PR curves ``{"k", "precision", "recall"}`` sharing one k grid."""
    if not curves:
        raise ValueError("mean_pr_curve: no curves")
    k = curves[0]["k"]
    if any(c["k"] != k for c in curves):
        raise ValueError("mean_pr_curve: the curves were measured at different ranks (different database sizes?)")
    precision = np.mean([c["precision"] for c in curves], axis=0)
    recall = np.mean([c["recall"] for c in curves], axis=0)
    return precision.tolist(), recall.tolist()


def _fmt(stat: dict, sign: str = "") -> str:
    return f"{stat['mean']:{sign}.4f}" + ("" if stat["std"] is None else f" ± {stat['std']:.4f}")


def results_markdown(rows: list[dict], settings: dict, figures: dict[int, str] | None = None,
                     missing: list[Cell] | None = None, paired: list[dict] | None = None) -> str:
    """The results table: one line per (bits, centers), mean ± std over seeds of mAP@cut-off with index
    tie-breaking and tie-aware; the best mean per length and column in bold."""
    if not rows:
        return "# shc-compare\n\nNo finished runs yet.\n"
    cutoffs = list(rows[0]["mAP"].keys())
    lines = ["# shc-compare results", ""]
    lines.append(", ".join(f"{k}: {v}" for k, v in settings.items()) + ".")
    lines += ["", "Mean ± sample std (ddof=1) over seeds. *index*: ties in Hamming distance broken by database index "
              "(shc-eval's default); *tie-aware*: expected AP over random orders within equal distance. "
              "Bold: best mean at that length.", ""]
    header = ["bits", "centers", "seeds"] + [f"{label} mAP@{k}" for _, label in TIES for k in cutoffs] + ["s/run"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for row in rows:
        for key, _ in TIES:
            for k in cutoffs:
                slot = (row["bits"], key, k)
                best[slot] = max(best.get(slot, -math.inf), row[key][k]["mean"])
    for row in rows:
        cells = [str(row["bits"]), row["centers"], ",".join(map(str, row["seeds"]))]
        for key, _ in TIES:
            for k in cutoffs:
                text = _fmt(row[key][k])
                cells.append(f"**{text}**" if row[key][k]["mean"] == best[(row["bits"], key, k)] else text)
        cells.append(f"{row['seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if paired:
        lines += ["", "Paired by seed (same split and initial network): difference of means ± std of the per-seed "
                  "differences, and seeds won/lost.", ""]
        header = ["bits", "difference"] + [f"{label} mAP@{k}" for _, label in TIES for k in cutoffs]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in paired:
            cells = [str(row["bits"]), f"{row['method']} − {row['baseline']}"]
            cells += [f"{_fmt(row[key][k], '+')} ({row[key][k]['wins']}/{row[key][k]['losses']})"
                      for key, _ in TIES for k in cutoffs]
            lines.append("| " + " | ".join(cells) + " |")
    if figures:
        lines += ["", "PR curves (Hamming ranking, mean over seeds): " +
                  ", ".join(f"[{b} bits]({p})" for b, p in sorted(figures.items()))]
    if missing:
        lines += ["", f"Not finished yet ({len(missing)}): " + ", ".join(c.dirname() for c in missing)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ driver
def _identity(cfg_dict: dict) -> dict:
    """A run's configuration as JSON would hold it, without the options that do not change results."""
    return {k: v for k, v in json.loads(json.dumps(cfg_dict)).items() if k not in _NOT_IDENTITY}


def finished_metrics(run_dir: Path, cfg) -> dict | None:
    """The metrics.json in run_dir if it is complete and was made with this configuration, else None."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if _identity(metrics.get("config", {})) == _identity(dataclasses.asdict(cfg)) else None


def run_grid(base, cells: list[Cell], out, *, run: Callable | None = None, log: Callable = print) -> dict:
    """Train every cell (or read it back when finished), writing results after each; returns results.json.

    ``base``: a ``TrainConfig`` holding every shared option; each cell replaces centers, bits, seed and out.
    Stage 1 is shared through ``base.stage1_cache`` (default ``out/stage1-cache``).
    """
    from shc.train.pipeline import run_pipeline
    run = run or run_pipeline
    out = Path(out)
    base = dataclasses.replace(base, stage1_cache=base.stage1_cache or str(out / "stage1-cache"))
    configs = {c: dataclasses.replace(base, method=c.centers, centers=None, method_options={}, bits=c.bits,
                                      seed=c.seed, out=str(out / "runs" / c.dirname())).resolved() for c in cells}
    metrics_by_cell: dict[Cell, dict] = {}
    t_start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        cfg = configs[cell]
        metrics = finished_metrics(Path(cfg.out), cfg)
        if metrics is not None:
            log(f"[{i}/{len(cells)}] {cell.dirname()}: finished earlier, reusing {cfg.out}/metrics.json")
        else:
            log(f"[{i}/{len(cells)}] {cell.dirname()}: training -> {cfg.out}")
            metrics = run(cfg)
            elapsed = time.perf_counter() - t_start
            log(f"[{i}/{len(cells)}] {cell.dirname()}: mAP " + " ".join(
                f"@{k} {v:.4f}" for k, v in metrics["mAP"].items()) + f"  ({elapsed / 60:.1f} min so far)")
        metrics_by_cell[cell] = metrics
        results = write_results(out, cells, metrics_by_cell, base)
    others = sorted(p.parent.name for p in (out / "runs").glob("*/metrics.json")
                    if p.parent.name not in {c.dirname() for c in cells})
    if others:  # results cover the grid asked for: say that the directory holds more
        log(f"results cover the {len(cells)} runs of this grid; {out / 'runs'} holds {len(others)} other finished "
            f"runs ({', '.join(others[:4])}{', ...' if len(others) > 4 else ''}): give every axis value to "
            f"tabulate them too")
    return results


def write_results(out, cells: list[Cell], metrics_by_cell: dict, base) -> dict:
    """results.json, results.md (atomically replaced) and pr_<bits>bits.png in out from the finished cells."""
    from shc.plots import plot_pr_curves
    from shc.train.artifacts import atomic_write, write_json

    out = Path(out)
    done = [c for c in cells if c in metrics_by_cell]
    runs = [run_record(metrics_by_cell[c]) for c in done]
    resolved = base.resolved()
    settings = {"dataset": resolved.dataset, "backbone": resolved.backbone,
                "classifier epochs": resolved.classify_epochs, "hashing epochs": resolved.epochs,
                "lr": resolved.lr, "batch": resolved.batch_size, "lambda": resolved.lambd}
    figures = {}
    for bits in sorted({c.bits for c in done}):
        curves = {}
        for method in dict.fromkeys(c.centers for c in done if c.bits == bits):
            group = [metrics_by_cell[c]["retrieval"]["pr_curve_rank"] for c in done
                     if c.bits == bits and c.centers == method]
            curves[f"{method} (n={len(group)})"] = mean_pr_curve(group)
        name = f"pr_{bits}bits.png"
        plot_pr_curves(curves, out / name, f"{resolved.dataset}, {bits} bits: Hamming ranking, mean over seeds")
        figures[bits] = name
    # SHC is the method under test: its per-seed differences to every other method
    methods = list(dict.fromkeys(c.centers for c in cells))
    paired = [row for other in methods if "shc" in methods and other != "shc"
              for row in paired_differences(runs, "shc", other)]
    results = {"settings": settings, "runs": runs, "summary": summarize(runs), "paired": paired,
               "figures": {str(b): p for b, p in figures.items()}}
    write_json(out / "results.json", results)
    text = results_markdown(results["summary"], settings, figures, [c for c in cells if c not in metrics_by_cell],
                            paired)
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    return results
