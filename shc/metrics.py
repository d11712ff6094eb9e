"""Retrieval metrics over Hamming ranking: ``evaluate``, ``search`` and ``report_from_buckets``.

Thin layer over the compiled engine (``shc._engine``): validate and convert the inputs (shc.codes), call in with
the GIL released, wrap the result in a Report. numpy only: importing this never imports torch.
Definitions (AP@k, tie modes, radius and rank PR) are in docs/engine.md.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from shc._compiled import _engine
from shc.codes import as_numpy, engine_threads, is_label_vector, pack_codes, prepare_labels

TIES = ("index", "expected", "optimistic", "pessimistic")
DEFAULT_TOPK = (100, 1000, "all")
PR_GRID_POINTS = 100


# ---------------------------------------------------------------------------------------------- arguments

def parse_topk(topk) -> list[tuple[int | str, int | None]]:
    """``(100, "1000", "all")`` -> ``[(100, 100), ("1000", 1000), ("all", None)]`` (None = the whole database).
    Keys are the values as the caller gave them (ints stay ints, numpy ints become ints, strings are stripped), so
    ``report.mAP[100]`` and the CLI's ``"100"`` both find their entry; the JSON's keys are their ``str``."""
    if isinstance(topk, (str, int, float, np.number)):
        topk = (topk,)
    try:
        items = list(topk)
    except TypeError:
        raise TypeError(f"topk must be an int, 'all' or a sequence of them, got {topk!r}") from None
    if not items:
        raise ValueError("topk is empty")
    parsed, seen = [], set()
    for k in items:
        if isinstance(k, str) and k.strip().lower() == "all":
            key, value = k.strip(), None
        elif isinstance(k, str) and k.strip().lstrip("+").isdigit():
            key, value = k.strip(), int(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            key, value = int(k), int(k)
        else:
            raise ValueError(f"topk values must be positive integers or 'all', got {k!r}")
        if value is not None and value <= 0:
            raise ValueError(f"topk values must be positive, got {k!r}")
        if str(key) not in seen:  # 100 and "100" are one cut-off (and one JSON key)
            seen.add(str(key))
            parsed.append((key, value))
    return parsed


def _check_ties(ties) -> str:
    if ties not in TIES:
        raise ValueError(f"unknown ties mode {ties!r} (choose from {', '.join(TIES)})")
    return ties


def _check_radius(radius) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    return int(radius)


def default_pr_ranks(n_database: int, points: int = PR_GRID_POINTS) -> np.ndarray:
    """Evenly spaced ranks 1..N (at most `points` of them) for the PR curve by rank."""
    ranks = np.linspace(1, n_database, min(points, n_database)).round().astype(np.int64)
    # ascending already: drop repeats by hand (np.unique would import numpy.ma, ~60 ms of a CLI start-up)
    return ranks[np.concatenate(([True], ranks[1:] != ranks[:-1]))]


def rank_plan(n_database: int, topk=DEFAULT_TOPK, pr_ranks=None) -> tuple[np.ndarray, np.ndarray]:
    """The ranks the engine evaluates: ``ap_ranks`` (one per topk, k > N and "all" become N) and ``hit_ranks``
    (the topk ranks, then the PR grid). External producers of ``index`` ties supply AP and hits at exactly these."""
    ap = np.array([n_database if v is None else min(v, n_database) for _, v in parse_topk(topk)], dtype=np.int64)
    if pr_ranks is None:
        grid = default_pr_ranks(n_database)
    else:
        grid = as_numpy(pr_ranks, "pr_ranks")
        if grid.ndim != 1 or grid.size == 0 or not np.issubdtype(grid.dtype, np.integer) or (grid < 1).any():
            raise ValueError("pr_ranks must be a non-empty 1-D array of positive integers")
        grid = np.minimum(grid.astype(np.int64), n_database)
    return ap, np.concatenate([ap, grid]).astype(np.int64)


# ------------------------------------------------------------------------------------------------- report

@dataclass
class Report:
    """Everything one evaluation measured. ``mAP``, ``precision_at_k`` and ``recall_at_k`` are keyed by the topk
    values as given (``report.mAP[100]``, ``report.mAP["all"]``); ``ap`` holds AP per query (a column per topk);
    ``str(report)`` is the summary table; ``to_dict()`` is the shc-eval JSON (string keys)."""
    mAP: dict
    precision_at_k: dict
    recall_at_k: dict
    ties: str
    bits: int
    n_query: int
    n_database: int
    queries_without_relevant: int
    radius: int
    precision_at_radius: float
    recall_at_radius: float
    pr_curve_radius: dict  # {"radius": [0..q], "precision": [...], "recall": [...]}
    pr_curve_rank: dict    # {"k": [...], "precision": [...], "recall": [...]}
    seconds: float
    threads: int
    isa: str
    ap: np.ndarray = field(repr=False, default=None)  # (n_query, len(mAP)) per-query AP, same key order as mAP

    def to_dict(self) -> dict:
        return {
            "mAP": _json_keys(self.mAP),
            "precision_at_k": _json_keys(self.precision_at_k),
            "recall_at_k": _json_keys(self.recall_at_k),
            "ties": self.ties,
            "bits": self.bits,
            "n_query": self.n_query,
            "n_database": self.n_database,
            "queries_without_relevant": self.queries_without_relevant,
            "radius": self.radius,
            "precision_at_radius": self.precision_at_radius,
            "recall_at_radius": self.recall_at_radius,
            "pr_curve_radius": {k: list(v) for k, v in self.pr_curve_radius.items()},
            "pr_curve_rank": {k: list(v) for k, v in self.pr_curve_rank.items()},
            "seconds": self.seconds,
            "threads": self.threads,
            "isa": self.isa,
        }

    def per_query_ap(self, k) -> np.ndarray:
        """AP@k of every query (float64, n_query), in query order; ``k`` a key of ``mAP``."""
        keys = list(self.mAP)
        if k not in keys:
            raise KeyError(f"no AP@{k!r}: the report's cut-offs are {', '.join(map(repr, keys))}")
        return self.ap[:, keys.index(k)]

    def pr_curves(self) -> dict:
        """``{label: (precision, recall)}`` for shc.plots.plot_pr_curves."""
        return {
            "by Hamming radius": (self.pr_curve_radius["precision"], self.pr_curve_radius["recall"]),
            "by rank": (self.pr_curve_rank["precision"], self.pr_curve_rank["recall"]),
        }

    def summary(self) -> str:
        """A readable table (what shc-eval prints)."""
        lines = [f"{self.n_query} queries x {self.n_database} database items, {self.bits} bits, "
                 f"ties={self.ties}, {self.threads} threads ({self.isa})",
                 f"{'k':>8}  {'mAP@k':>8}  {'P@k':>8}  {'R@k':>8}"]
        for key in self.mAP:
            lines.append(f"{key!s:>8}  {self.mAP[key]:8.4f}  {self.precision_at_k[key]:8.4f}  {self.recall_at_k[key]:8.4f}")
        lines.append(f"P@H<={self.radius} {self.precision_at_radius:.4f}   R@H<={self.radius} {self.recall_at_radius:.4f}")
        lines.append(f"queries without relevant items: {self.queries_without_relevant}")
        lines.append(f"time: {self.seconds:.3f} s")
        return "\n".join(lines)

    __str__ = summary


def _json_keys(by_cutoff: dict) -> dict:
    return {str(k): v for k, v in by_cutoff.items()}


def _make_report(raw: dict, keys: list[str], ties: str, bits: int, n_query: int, n_database: int, radius: int,
                 hit_ranks: np.ndarray, seconds: float, threads: int) -> Report:
    K = len(keys)
    ap = raw["ap"]
    # sequential sum in query order: the same number for any thread count
    mean_ap = [math.fsum(ap[:, j]) / n_query for j in range(K)]
    rank_p, rank_r = raw["rank_precision"], raw["rank_recall"]
    rho = min(radius, bits)
    return Report(
        mAP=dict(zip(keys, mean_ap)),
        precision_at_k=dict(zip(keys, map(float, rank_p[:K]))),
        recall_at_k=dict(zip(keys, map(float, rank_r[:K]))),
        ties=ties, bits=bits, n_query=n_query, n_database=n_database,
        queries_without_relevant=int(raw["queries_without_relevant"]),
        radius=radius,
        precision_at_radius=float(raw["radius_precision"][rho]),
        recall_at_radius=float(raw["radius_recall"][rho]),
        pr_curve_radius={"radius": list(range(bits + 1)), "precision": raw["radius_precision"].tolist(),
                         "recall": raw["radius_recall"].tolist()},
        pr_curve_rank={"k": hit_ranks[K:].tolist(), "precision": rank_p[K:].tolist(), "recall": rank_r[K:].tolist()},
        seconds=seconds, threads=threads or _engine.default_threads(), isa=_engine.isa(), ap=ap,
    )


# --------------------------------------------------------------------------------------------------- API

def _is_cuda_tensor(x) -> bool:
    """A CUDA torch tensor, recognised without importing torch (plain ``import shc`` stays torch-free)."""
    return type(x).__module__.startswith("torch") and bool(getattr(x, "is_cuda", False))


def _use_gpu(query_codes, db_codes, bits) -> bool:
    """CUDA codes go to the Triton kernels (shc.kernels.hamming) unless SHC_DISABLE_TRITON=1. np.packbits bytes
    (``bits`` given) have no GPU path and are evaluated here."""
    return (bits is None and os.environ.get("SHC_DISABLE_TRITON", "0") != "1"
            and _is_cuda_tensor(query_codes) and _is_cuda_tensor(db_codes))


def _on_device(labels, like):
    """Labels as a tensor on the codes' device (torch is already imported: the codes are torch tensors); a label
    vector stored as a one-row or one-column matrix becomes the 1-D class ids it is, as on the CPU."""
    if not type(labels).__module__.startswith("torch"):
        labels = sys.modules["torch"].as_tensor(as_numpy(labels, "labels"))
    if is_label_vector(labels, like.shape[0]):
        labels = labels.reshape(-1)
    return labels.to(like.device)


def _pack_pair(query_codes, db_codes, bits):
    q, q_bits = pack_codes(query_codes, bits, what="query codes")
    d, d_bits = pack_codes(db_codes, bits, what="database codes")
    if q_bits != d_bits:
        raise ValueError(f"bit-length mismatch: query codes have {q_bits} bits, database codes {d_bits}")
    if q_bits > _engine.MAX_BITS:
        raise ValueError(f"codes have {q_bits} bits; the engine supports at most {_engine.MAX_BITS}")
    return q, d, q_bits


def evaluate(query_codes, db_codes, query_labels, db_labels, topk=DEFAULT_TOPK, ties="index", threads=None,
             bits=None, radius=2, pr_ranks=None) -> Report:
    """mAP@k (several k at once), precision/recall@k, precision/recall within Hamming radius and both PR curves.

    Codes: ±1 / {0,1} / bool / real-valued (sign) arrays, or np.packbits bytes with `bits`. Labels: class ids,
    one-hot or multi-hot rows. ``topk`` entries are positive ints or "all"; k > N counts as N.
    CUDA torch tensors as codes run on the GPU (evaluate_cuda below) unless SHC_DISABLE_TRITON=1.
    """
    start = time.perf_counter()
    keys = [key for key, _ in parse_topk(topk)]
    ties = _check_ties(ties)
    n_threads = engine_threads(threads)
    radius = _check_radius(radius)
    if _use_gpu(query_codes, db_codes, bits):
        return evaluate_cuda(query_codes, db_codes, _on_device(query_labels, query_codes),
                             _on_device(db_labels, db_codes), topk=topk, ties=ties, radius=radius, pr_ranks=pr_ranks)
    q, d, q_bits = _pack_pair(query_codes, db_codes, bits)
    labels = prepare_labels(query_labels, db_labels, q.shape[0], d.shape[0])
    ap_ranks, hit_ranks = rank_plan(d.shape[0], topk, pr_ranks)
    raw = _engine.evaluate(q, d, q_bits, labels["query_ids"], labels["db_ids"], labels["query_bitmaps"],
                           labels["db_bitmaps"], ties, ap_ranks, hit_ranks, n_threads)
    return _make_report(raw, keys, ties, q_bits, q.shape[0], d.shape[0], radius, hit_ranks,
                        time.perf_counter() - start, n_threads)


def evaluate_cuda(query_codes: torch.Tensor, db_codes: torch.Tensor, query_labels: torch.Tensor,
                  db_labels: torch.Tensor, topk=(100, 1000, "all"), ties: str = "index", radius: int = 2,
                  pr_ranks=None, query_chunk: int | None = None, profile: dict | None = None):
    """shc.evaluate for device tensors. The histograms (and, for `index` ties, the top-k entries in index
    order) come from the kernels; every metric is reduced by the engine (shc.metrics.report_from_buckets),
    so the Report equals shc.evaluate's on the same codes exactly. The kernels (shc.kernels.hamming) run the device
    part; the host part is here, with the engine, so that the kernels never import the evaluation.

    `index` ties need the in-bucket order up to the largest rank evaluated (N when topk holds "all" or the
    PR-by-rank grid reaches N): the entries of those items travel to the engine's own index walk, in query
    chunks of ~64 MB. Pass finite topk and pr_ranks (or ties="expected") to keep that transfer small.
    profile: a dict to receive the seconds of each stage (synchronising the device after each; for tuning).
    """
    import torch

    from shc.kernels.hamming import bucket_histograms, code_bits, index_entries, label_relevance, pack_bits

    start = last = time.perf_counter()

    def stage_done(name):
        nonlocal last
        if profile is not None:
            if query_codes.is_cuda:
                torch.cuda.synchronize(query_codes.device)
            now = time.perf_counter()
            profile[name] = profile.get(name, 0.0) + now - last
            last = now
    q_bits, db_bits = code_bits(query_codes, "query codes"), code_bits(db_codes, "database codes")
    bits = q_bits.shape[1]
    if db_bits.shape[1] != bits:
        raise ValueError(f"query codes have {bits} bits, database codes {db_bits.shape[1]}")
    if query_labels.shape[0] != q_bits.shape[0] or db_labels.shape[0] != db_bits.shape[0]:
        raise ValueError("label and code counts differ")
    if query_labels.dim() != db_labels.dim():
        raise ValueError("query and database labels must both be class ids or both label rows")
    qw, dbw = pack_bits(q_bits), pack_bits(db_bits)
    q_rel, db_rel = label_relevance(query_labels), label_relevance(db_labels)
    N = dbw.shape[0]
    stage_done("pack")
    n, r = bucket_histograms(qw, dbw, bits, q_rel, db_rel)
    stage_done("histograms")
    n_host, r_host = n.cpu().numpy(), r.cpu().numpy()
    stage_done("histograms_to_host")
    index = {}
    if ties == "index":
        if not hasattr(_engine, "index_walk"):
            raise NotImplementedError("ties='index' on CUDA tensors needs shc._engine.index_walk; "
                                      "use ties='expected' or CPU arrays")
        ap_ranks, hit_ranks = rank_plan(N, topk, pr_ranks)
        k = int(max(ap_ranks.max(), hit_ranks.max()))
        chunk = query_chunk or max(1, (1 << 25) // k)
        parts = []
        for s in range(0, qw.shape[0], chunk):
            part = index_entries(qw[s:s + chunk], dbw, bits, q_rel[s:s + chunk], db_rel, n[s:s + chunk], k)
            stage_done("index_select")
            parts.append(part.to(torch.int16).cpu().numpy().view(np.uint16))
            stage_done("index_to_host")
        entries = np.concatenate(parts)
        index["index_ap"], index["index_hits"] = _engine.index_walk(entries, n_host, r_host, bits, N, ap_ranks,
                                                                    hit_ranks, threads=engine_threads(None))
        stage_done("index_walk")
    report = report_from_buckets(n_host, r_host, topk=topk, ties=ties, radius=radius, pr_ranks=pr_ranks,
                                         seconds=time.perf_counter() - start, **index)
    stage_done("report")
    return report


def search(query_codes, db_codes, k, threads=None, bits=None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest database items of every query, ordered by (Hamming distance, index).

    Returns ``(indices int64 (Q, k), distances int32 (Q, k))``; k > N returns all N items.
    CUDA torch tensors as codes run on the GPU (shc.kernels.hamming.search_cuda; torch tensors come back).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    n_threads = engine_threads(threads)
    if _use_gpu(query_codes, db_codes, bits):
        from shc.kernels.hamming import search_cuda
        return search_cuda(query_codes, db_codes, int(min(k, db_codes.shape[0])))
    q, d, q_bits = _pack_pair(query_codes, db_codes, bits)
    return _engine.search(q, d, q_bits, int(min(k, d.shape[0])), n_threads)


def buckets(query_codes, db_codes, query_labels, db_labels, threads=None, bits=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-query histograms ``n, r`` (int64, Q x (q+1)): items and relevant items at each Hamming distance."""
    n_threads = engine_threads(threads)
    q, d, q_bits = _pack_pair(query_codes, db_codes, bits)
    labels = prepare_labels(query_labels, db_labels, q.shape[0], d.shape[0])
    return _engine.buckets(q, d, q_bits, threads=n_threads, **labels)


def report_from_buckets(n, r, topk=DEFAULT_TOPK, ties="index", radius=2, pr_ranks=None, index_ap=None,
                        index_hits=None, threads=None, seconds=0.0) -> Report:
    """The Report of evaluate(), from per-query histograms produced elsewhere (GPU, sharded database).

    ``n[i, d]`` / ``r[i, d]``: database items / relevant items at Hamming distance d from query i (int, Q x (q+1));
    histograms of database shards simply add up. The reduction is the engine's own, so the numbers equal
    evaluate()'s exactly for ``expected``, ``optimistic`` and ``pessimistic`` ties.
    ``index`` ties depend on the in-bucket order, which histograms do not carry: the producer passes, from its own
    stable ranking (ties by database index), ``index_ap`` = AP@k (float64, Q x len(ap_ranks)) and ``index_hits`` =
    relevant items in the top k (Q x len(hit_ranks)), at the ranks ``rank_plan(N, topk, pr_ranks)`` returns.
    """
    keys = [key for key, _ in parse_topk(topk)]
    ties = _check_ties(ties)
    n_threads = engine_threads(threads)
    radius = _check_radius(radius)
    n, r = as_numpy(n, "n"), as_numpy(r, "r")
    for arr, name in ((n, "n"), (r, "r")):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be an integer array, got dtype={arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
            raise ValueError(f"{name} must be a non-empty Q x (q+1) array, got shape {arr.shape}")
    if n.shape != r.shape:
        raise ValueError(f"n and r differ in shape: {n.shape} vs {r.shape}")
    if (r < 0).any() or (r > n).any():
        raise ValueError("buckets must satisfy 0 <= r <= n")
    totals = n.sum(axis=1)
    if (totals != totals[0]).any() or totals[0] < 1:
        raise ValueError("every query's histogram must count the same, non-zero number of database items")
    n_query, bits, n_database = n.shape[0], n.shape[1] - 1, int(totals[0])
    ap_ranks, hit_ranks = rank_plan(n_database, topk, pr_ranks)
    extra = {}
    if ties == "index":
        if index_ap is None or index_hits is None:
            raise ValueError("ties='index' needs index_ap and index_hits from the producer's stable ranking "
                             "(histograms do not carry the in-bucket order); or use ties='expected'")
        extra = dict(index_ap=np.ascontiguousarray(as_numpy(index_ap, "index_ap"), dtype=np.float64),
                     index_hits=np.ascontiguousarray(as_numpy(index_hits, "index_hits"), dtype=np.float64))
        for name, arr, width in (("index_ap", extra["index_ap"], ap_ranks.size),
                                 ("index_hits", extra["index_hits"], hit_ranks.size)):
            if arr.shape != (n_query, width):
                raise ValueError(f"{name} must have shape {(n_query, width)}, got {arr.shape}")
    raw = _engine.reduce_buckets(np.ascontiguousarray(n, dtype=np.int64), np.ascontiguousarray(r, dtype=np.int64),
                                 bits, n_database, ties, ap_ranks, hit_ranks, threads=n_threads, **extra)
    return _make_report(raw, keys, ties, bits, n_query, n_database, radius, hit_ranks, float(seconds), n_threads)
