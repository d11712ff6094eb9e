"""shc-compare's grid: every (method, bits, seed) cell trained with the same budget, then mean ± std per method
and code length under both tie conventions, a results table and one PR-curve figure per length.

A grid method is an entry of ``--methods``: a registered method name, ``all`` (the eleven), or
``LABEL=NAME:KEY=VALUE,...`` — a method with options under a label of its own (``shc-paper=shc:polish_passes=0``).

The pure parts (``plan_grid``, ``run_record``, ``summarize``, ``mean_pr_curve``, ``results_markdown``) take plain
data and are tested in milliseconds; ``run_grid`` drives ``shc.train.run_pipeline`` over the grid. A cell whose
run directory already holds a finished ``metrics.json`` for the same configuration is read back, not retrained,
so an interrupted grid is continued by rerunning the command, and two processes may split a grid between them
(a final run over the whole grid then only aggregates).
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from shc.report_tables import FAMILIES as TIES  # result key, label in tables
from shc.report_tables import (format_cell, index_cells, mean_std, method_order,  # noqa: F401 (part of this API)
                                paired_differences, table_cells)
# Options that say where/how a run is written, not what it computes: ignored when matching finished runs.
_NOT_IDENTITY = ("out", "progress", "resume", "stage1_cache", "threads", "workers", "image_cache", "device",
                 "dist_timeout")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the grid: ``label`` names it in tables, figures and its directory; ``method`` and ``options``
    (sorted (key, value) pairs) are what it trains (a plain method name is its own label)."""
    label: str
    bits: int
    seed: int
    method: str = ""
    options: tuple = ()

    def __post_init__(self):
        if not self.method:
            object.__setattr__(self, "method", self.label)

    def dirname(self) -> str:
        return f"{self.label}-{self.bits}bits-seed{self.seed}"


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def parse_method_entries(entries: Iterable[str]) -> list[tuple[str, str, tuple]]:
    """``--methods`` entries -> [(label, method, options)] in the order given, ``all`` expanded to the registry's
    methods. An entry is NAME, ``all`` or LABEL=NAME[:KEY=VALUE,...] (values are Python literals). One-line
    ValueError for an unknown method or option, a malformed entry, or a label given two meanings; an identical
    repeat is dropped."""
    from shc.methods import check_method_name, list_methods, resolve_method_options
    from shc.train.options import parse_data_options

    parsed: dict[str, tuple[str, str, tuple]] = {}
    for entry in entries:
        if entry == "all":
            items = [(name, name, {}) for name in list_methods()]
        else:
            label, eq, rest = entry.partition("=")
            name, colon, opts = rest.partition(":") if eq else (label, "", "")
            if not _LABEL.fullmatch(label) or (eq and not name) or (colon and not opts):
                raise ValueError(f"--methods {entry!r}: give NAME, all, or LABEL=NAME:KEY=VALUE[,KEY=VALUE...] "
                                 f"(labels: letters, digits, _ . + -)")
            options = parse_data_options(opts.split(",") if opts else (), flag=f"--methods {label}: an option")
            items = [(label, check_method_name(name), options)]
        for label, name, options in items:
            try:
                resolve_method_options(name, options)
            except ValueError as exc:
                raise ValueError(f"--methods {label}: {exc}") from None
            cell = (label, name, tuple(sorted(options.items())))
            if parsed.get(label, cell) != cell:
                raise ValueError(f"--methods: label {label!r} is given twice with different meanings "
                                 f"({parsed[label][1]} {dict(parsed[label][2])} and {name} {options}); rename one")
            parsed[label] = cell
    return list(parsed.values())


def plan_grid(methods: Iterable, bits: Iterable[int], seeds: Iterable[int]) -> list[Cell]:
    """All cells, seed-major (each seed's stage 1 is trained once, by its first shc cell, then reused), then
    length, then method. ``methods``: ``--methods`` entries (strings) or parsed (label, method, options) triples.
    Raises ValueError on unknown methods, bad lengths/seeds or duplicates."""
    methods, bits, seeds = list(methods), list(bits), list(seeds)
    for name, values in (("methods", methods), ("bits", bits), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{name}: give at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"{name}: duplicate values in {values}")
    if all(isinstance(m, str) for m in methods):
        methods = parse_method_entries(methods)
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"bits must be positive integers, got {b!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
    return [Cell(label, b, s, method, options) for s in seeds for b in bits for label, method, options in methods]


def run_record(metrics: dict, label: str | None = None) -> dict:
    """One results.json entry from a run's metrics.json content. ``method`` is the label the tables and figures
    use: ``label`` (the grid's), else the run's training method (the center type for runs made before the method
    registry)."""
    report = metrics.get("center_report") or {}
    return {"method": label or metrics.get("method") or metrics["centers"], "centers": metrics.get("centers"),
            "method_options": metrics.get("method_options"),
            "bits": int(metrics["bits"]),
            "seed": int(metrics["seed"]), "mAP": dict(metrics["mAP"]), "mAP_expected": dict(metrics["mAP_expected"]),
            "seconds": dict(metrics["seconds"]),
            "center_distance": {k: report.get(k) for k in ("min_distance", "mean_distance", "d_required")},
            "classifier_accuracy": (metrics.get("stage1") or {}).get("query_accuracy")}


def summarize(runs: list[dict]) -> list[dict]:
    """Mean ± std over seeds for each (method, bits): lengths ascending, methods in method_order."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["bits"], r["method"]), []).append(r)
    order = method_order(r["method"] for r in runs)
    rows = []
    for (bits, method), group in sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
        totals = [r["seconds"]["total"] for r in group if (r.get("seconds") or {}).get("total") is not None]
        row = {"method": method, "bits": bits, "n": len(group),
               "seeds": sorted(r["seed"] for r in group),
               "seconds": mean_std(totals)[0] if totals else None}
        for key, _ in TIES:
            cutoffs = group[0][key].keys()
            row[key] = {k: dict(zip(("mean", "std"), mean_std([r[key][k] for r in group]))) for k in cutoffs}
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


def _fmt_gain(stat: dict) -> str:
    ci = "n/a" if stat.get("ci95") is None else f"{stat['ci95'][0]:+.4f}, {stat['ci95'][1]:+.4f}"
    return f"{stat['mean']:+.4f} [{ci}] ({stat['wins']}/{stat['losses']})"


def results_markdown(runs: list[dict], settings: dict, figures: dict[int, str] | None = None,
                     missing: list[Cell] | None = None, paired: list[dict] | None = None,
                     wilcoxon: list[dict] | None = None, extra_figures: dict[str, str] | None = None) -> str:
    """The results table: one line per (bits, method), mean ± std over seeds of mAP@cut-off with index
    tie-breaking and tie-aware (shc.report_tables.table_cells); the best mean per length and column in bold. Then
    the paired gains (with their 95 % t-intervals) and the Wilcoxon tests across queries when given."""
    if not runs:
        return "# shc-compare\n\nNo finished runs yet.\n"
    rows = summarize(runs)
    cutoffs = list(rows[0]["mAP"].keys())
    at = index_cells(table_cells(runs, cutoffs))
    lines = ["# shc-compare results", ""]
    lines.append(", ".join(f"{k}: {v}" for k, v in settings.items()) + ".")
    lines += ["", "Mean ± sample std (ddof=1) over seeds. *index*: ties in Hamming distance broken by database index "
              "(shc-eval's default); *tie-aware*: expected AP over random orders within equal distance. "
              "Bold: best mean at that length.", ""]
    header = ["bits", "method", "seeds"] + [f"{label} mAP@{k}" for _, label in TIES for k in cutoffs] + ["s/run"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["bits"]), row["method"], ",".join(map(str, row["seeds"]))]
        cells += [format_cell(at[(label, row["method"], row["bits"], k)], " ± ", "**{}**")
                  for _, label in TIES for k in cutoffs]
        cells.append("–" if row["seconds"] is None else f"{row['seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if paired:
        lines += ["", "Paired by seed (same split and initial network): mean of the per-seed differences "
                  "[95 % t-interval; n/a with one seed] (seeds won/lost).", ""]
        header = ["bits", "difference"] + [f"{label} mAP@{k}" for _, label in TIES for k in cutoffs]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in paired:
            cells = [str(row["bits"]), f"{row['method']} − {row['baseline']}"]
            cells += [_fmt_gain(row[key][k]) for key, _ in TIES for k in cutoffs]
            lines.append("| " + " | ".join(cells) + " |")
    if wilcoxon:
        lines += ["", "Paired Wilcoxon signed-rank test across queries (index ties; the (seed, query) pairs of the "
                  "seeds both have): mean per-query AP difference, p (two-sided; – when every difference is 0).", ""]
        header = ["bits", "difference"] + [f"AP@{k}" for k in cutoffs]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        by_pair: dict[tuple, dict] = {}
        for w in wilcoxon:
            by_pair.setdefault((w["bits"], w["method"], w["baseline"]), {})[w["cutoff"]] = w
        for (bits, method, baseline), tests in by_pair.items():
            cells = [str(bits), f"{method} − {baseline}"]
            for k in cutoffs:
                w = tests.get(str(k))
                cells.append("–" if w is None else f"{w['mean_difference']:+.4f}, p = " +
                             ("–" if w["p_value"] is None else f"{w['p_value']:.2g}") + f" (n = {w['n_pairs']})")
            lines.append("| " + " | ".join(cells) + " |")
    if figures:
        lines += ["", "PR curves (Hamming ranking, mean over seeds): " +
                  ", ".join(f"[{b} bits]({p})" for b, p in sorted(figures.items()))]
    if extra_figures:
        lines += ["", " ".join(f"[{name}]({p})" for name, p in extra_figures.items())]
    if missing:
        lines += ["", f"Not finished yet ({len(missing)}): " + ", ".join(c.dirname() for c in missing)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ driver
def _identity(cfg_dict: dict) -> dict:
    """A run's configuration as JSON would hold it, without the options that do not change results."""
    return {k: v for k, v in json.loads(json.dumps(cfg_dict)).items() if k not in _NOT_IDENTITY}


def finished_metrics(run_dir: Path, cfg) -> dict | None:
    """The metrics.json in run_dir if the run is complete (its manifest vouches for metrics.json and codes/) and
    was made with this configuration, else None (the cell is trained again)."""
    from shc.integrity import read_manifest, verified_bytes
    try:
        manifest = read_manifest(run_dir)
        metrics = json.loads(verified_bytes(run_dir, "metrics.json", manifest))
        for name in ("query_codes", "db_codes", "query_labels", "db_labels"):
            verified_bytes(run_dir, f"codes/{name}.npy", manifest)
    except ValueError:
        return None
    return metrics if _identity(metrics.get("config", {})) == _identity(dataclasses.asdict(cfg)) else None


@dataclasses.dataclass(frozen=True)
class External:
    """Codes made outside the grid (``shc-compare --external``): evaluated on the split of ``seed`` — the query
    and database order of that seed's runs (their codes/ labels, and paths or indices) — at their own length."""
    label: str
    seed: int
    query: str  # file specs as shc.io.load_array reads them
    db: str
    bits: int

    def dirname(self) -> str:
        return f"external-{self.label}-{self.bits}bits-seed{self.seed}"


def parse_external(name: str, query: str, db: str, seeds: list[int]) -> External:
    """``NAME`` or ``NAME@SEED`` (default: the first grid seed) and the two code files -> External; the codes are
    read here to learn their length (one-line ValueError on unreadable or non-binary codes, or a length mismatch)."""
    from shc.codes import pack_codes
    from shc.io import load_array

    label, sep, seed_text = name.partition("@")
    if not label.strip() or label != label.strip():
        raise ValueError(f"--external {name!r}: give a label (NAME or NAME@SEED)")
    if sep and not seed_text.isdigit():
        raise ValueError(f"--external {name}: the seed after @ must be an integer >= 0, got {seed_text!r}")
    seed = int(seed_text) if sep else seeds[0]
    if seed not in seeds:
        raise ValueError(f"--external {name}: seed {seed} is not one of the grid's seeds "
                         f"({' '.join(map(str, seeds))}); its split would have no runs to pair with")
    lengths = []
    for spec, what in ((query, "query codes"), (db, "database codes")):
        try:
            lengths.append(pack_codes(load_array(spec, mmap=True), what=what)[1])
        except (ValueError, TypeError, OSError) as exc:
            raise ValueError(f"--external {name} {spec}: {exc}") from None
    if lengths[0] != lengths[1]:
        raise ValueError(f"--external {name}: query codes have {lengths[0]} bits, database codes {lengths[1]}")
    return External(label, seed, query, db, lengths[0])


def check_externals(externals: list[External], cells: list[Cell]) -> None:
    """One-line ValueError for a label that clashes with a grid method or another external entry of the same seed
    and length, or codes of a length no grid cell has."""
    methods = {c.label for c in cells}
    grid_bits = sorted({c.bits for c in cells})
    seen = set()
    for e in externals:
        if e.label in methods:
            raise ValueError(f"--external {e.label}: the label clashes with a method of the grid; choose another name")
        if (e.label, e.seed, e.bits) in seen:  # one label may hold codes of several lengths
            raise ValueError(f"--external {e.label}: given twice for seed {e.seed} at {e.bits} bits")
        seen.add((e.label, e.seed, e.bits))
        if e.bits not in grid_bits:
            raise ValueError(f"--external {e.label}: codes of {e.bits} bits, but no grid cell has that length "
                             f"(--bits {' '.join(map(str, grid_bits))})")


def _load_codes_dir(codes_dir: Path) -> dict:
    from shc.io import load_array
    return {name: load_array(str(codes_dir / f"{name}.npy"), mmap=True)
            for name in ("query_codes", "db_codes", "query_labels", "db_labels")}


def per_query_ap(codes_dir, topk) -> np.ndarray:
    """AP@k of every query (index ties; float64 (Q, len(topk)), columns in topk order) from a run's codes/."""
    from shc.metrics import evaluate
    a = _load_codes_dir(Path(codes_dir))
    return evaluate(a["query_codes"], a["db_codes"], a["query_labels"], a["db_labels"], topk=topk).ap


def evaluate_external(e: External, codes_dir, topk) -> dict:
    """The external codes on the split whose labels are in ``codes_dir`` (a run of that seed): a results.json run
    entry, its PR curve by rank and its per-query AP. Rows must match that split's labels."""
    from shc.io import load_array
    from shc.metrics import evaluate

    split = _load_codes_dir(Path(codes_dir))
    codes = {"query": load_array(e.query, mmap=True), "db": load_array(e.db, mmap=True)}
    for side, labels in (("query", "query_labels"), ("db", "db_labels")):
        if len(codes[side]) != len(split[labels]):
            raise ValueError(f"--external {e.label} {getattr(e, side)}: {len(codes[side])} rows, but the grid's "
                             f"{'queries' if side == 'query' else 'database'} for seed {e.seed} hold "
                             f"{len(split[labels])} items ({Path(codes_dir) / labels}.npy); encode the same items "
                             f"in the same order")
    start = time.perf_counter()
    index = evaluate(codes["query"], codes["db"], split["query_labels"], split["db_labels"], topk=topk)
    expected = evaluate(codes["query"], codes["db"], split["query_labels"], split["db_labels"], topk=topk,
                        ties="expected")
    full = index.to_dict()
    record = {"method": e.label, "centers": None, "bits": e.bits, "seed": e.seed, "mAP": full["mAP"],
              "mAP_expected": expected.to_dict()["mAP"],
              "seconds": {"eval": time.perf_counter() - start, "total": None},
              "external": {"query": e.query, "db": e.db}}
    return {"record": record, "pr_curve_rank": full["pr_curve_rank"], "per_query_ap": index.ap}


def run_grid(base, cells: list[Cell], out, *, externals: list[External] = (), run: Callable | None = None,
             log: Callable = print) -> dict:
    """Train every cell (or read it back when finished), writing results after each; returns results.json.

    ``base``: a ``TrainConfig`` holding every shared option; each cell replaces method, its options, bits, seed
    and out.
    Stage 1 is shared through ``base.stage1_cache`` (default ``out/stage1-cache``). Every cell's per-query AP is
    computed from its codes/ and saved in ``out/per-query-ap/``; each external entry is evaluated once its seed's
    first run is finished (its labels give the split).
    """
    from shc.train.artifacts import write_array
    from shc.train.pipeline import run_pipeline
    run = run or run_pipeline
    out = Path(out)
    base = dataclasses.replace(base, stage1_cache=base.stage1_cache or str(out / "stage1-cache"))
    configs = {c: dataclasses.replace(base, method=c.method, centers=None, method_options=dict(c.options),
                                      bits=c.bits, seed=c.seed, out=str(out / "runs" / c.dirname())).resolved()
               for c in cells}
    metrics_by_cell: dict[Cell, dict] = {}
    per_query: dict = {}      # Cell or External -> (Q, K) AP
    evaluated: dict = {}      # External -> evaluate_external's dict
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
        codes_dir = Path(cfg.out) / "codes"
        per_query[cell] = per_query_ap(codes_dir, cfg.topk)
        write_array(out / "per-query-ap" / f"{cell.dirname()}.npy", per_query[cell])
        for e in externals:
            if e.seed == cell.seed and e not in evaluated:
                evaluated[e] = evaluate_external(e, codes_dir, cfg.topk)
                per_query[e] = evaluated[e]["per_query_ap"]
                write_array(out / "per-query-ap" / f"{e.dirname()}.npy", per_query[e])
                log(f"{e.dirname()}: mAP " + " ".join(
                    f"@{k} {v:.4f}" for k, v in evaluated[e]["record"]["mAP"].items()))
        results = write_results(out, cells, metrics_by_cell, base, per_query=per_query, externals=evaluated)
    others = sorted(p.parent.name for p in (out / "runs").glob("*/metrics.json")
                    if p.parent.name not in {c.dirname() for c in cells})
    if others:  # results cover the grid asked for: say that the directory holds more
        log(f"results cover the {len(cells)} runs of this grid; {out / 'runs'} holds {len(others)} other finished "
            f"runs ({', '.join(others[:4])}{', ...' if len(others) > 4 else ''}): give every axis value to "
            f"tabulate them too")
    return results


def write_results(out, cells: list[Cell], metrics_by_cell: dict, base, *, per_query: dict | None = None,
                  externals: dict | None = None) -> dict:
    """results.json, results.md, results.csv, results.tex (each atomically replaced), pr_<bits>bits.png/.pdf and
    map_vs_bits.png/.pdf in out from the finished cells and the evaluated external codes.

    ``per_query``: ``{Cell or External: (Q, K) per-query AP}`` for the Wilcoxon tests; ``externals``:
    ``{External: evaluate_external's dict}``."""
    from shc.plots import method_styles, plot_map_vs_bits, plot_pr_curves
    from shc.report_tables import csv_table, gains_over_others, latex_table, wilcoxon_across_queries
    from shc.train.artifacts import atomic_write, write_json

    out = Path(out)
    per_query, externals = per_query or {}, externals or {}
    done = [c for c in cells if c in metrics_by_cell]
    runs = [run_record(metrics_by_cell[c], c.label) for c in done] + [x["record"] for x in externals.values()]
    curves = [metrics_by_cell[c]["retrieval"]["pr_curve_rank"] for c in done] + \
             [x["pr_curve_rank"] for x in externals.values()]
    resolved = base.resolved()
    settings = {"dataset": resolved.dataset, "backbone": resolved.backbone,
                "classifier epochs": resolved.classify_epochs, "hashing epochs": resolved.epochs,
                "lr": resolved.lr, "batch": resolved.batch_size, "lambda": resolved.lambd}
    order = method_order(r["method"] for r in runs)
    styles = method_styles(order)
    figures = {}
    for bits in sorted({r["bits"] for r in runs}):
        mean_curves = {m: mean_pr_curve([c for r, c in zip(runs, curves) if r["bits"] == bits and r["method"] == m])
                       for m in order if any(r["bits"] == bits and r["method"] == m for r in runs)}
        for suffix in (".png", ".pdf"):
            plot_pr_curves(mean_curves, out / f"pr_{bits}bits{suffix}", styles=styles,
                           title=f"{resolved.dataset}, {bits} bits: Hamming ranking, mean over queries and seeds")
        figures[bits] = f"pr_{bits}bits.png"
    cutoffs = list(runs[0]["mAP"]) if runs else []
    summary = summarize(runs)
    if summary:
        headline = "all" if "all" in cutoffs else cutoffs[-1]
        series = {m: {row["bits"]: (row["mAP"][headline]["mean"], row["mAP"][headline]["std"])
                      for row in summary if row["method"] == m} for m in order}
        for suffix in (".png", ".pdf"):
            plot_map_vs_bits(series, out / f"map_vs_bits{suffix}", styles=styles, ylabel=f"mAP@{headline}",
                             title=f"{resolved.dataset}: mAP@{headline} (index ties), mean ± std over seeds")
    # SHC is the method under test: its per-seed differences to every other method, and across queries
    paired = gains_over_others(runs, "shc")
    columns = [str(k) for k in resolved.topk]
    ap_by_run = {(r["method"], r["bits"], r["seed"]): dict(zip(columns, per_query[key].T))
                 for r, key in zip(runs, done + list(externals)) if key in per_query}
    wilcoxon = wilcoxon_across_queries(ap_by_run, "shc")
    results = {"settings": settings, "runs": runs, "summary": summary, "paired": paired, "wilcoxon": wilcoxon,
               "figures": {str(b): p for b, p in figures.items()},
               "per_query_ap": {"ties": "index", "columns": columns,
                                "files": {key.dirname(): f"per-query-ap/{key.dirname()}.npy"
                                          for key in done + list(externals) if key in per_query}}}
    if summary:
        results["map_vs_bits"] = "map_vs_bits.png"
    write_json(out / "results.json", results)
    text = results_markdown(runs, settings, figures, [c for c in cells if c not in metrics_by_cell], paired,
                            wilcoxon, {"mAP vs bits": "map_vs_bits.png"} if summary else None)
    cells_table = table_cells(runs)
    for name, content in (("results.md", text), ("results.csv", csv_table(cells_table)),
                          ("results.tex", latex_table(cells_table))):
        atomic_write(out / name, lambda tmp, content=content: Path(tmp).write_text(content))
    return results
