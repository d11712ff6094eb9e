"""Retrieval evaluation during and after training: codes of the query and database splits, mAP under both tie
conventions, and the tie-aware metrics of a database split across ranks (``evaluate_sharded``).

The metrics themselves are shc.metrics' (the C++ engine); this module adds the encoding and the ranks.
"""
from __future__ import annotations

import numpy as np

from shc.train.dist import Dist

SHARDED_TIES = ("expected", "optimistic", "pessimistic")


def evaluate_sharded(query_codes, db_codes, query_labels, db_labels, *, dist: Dist | None = None,
                     topk=(100, 1000, "all"), ties: str = "expected", radius: int = 2, pr_ranks=None,
                     threads=None, bits=None):
    """Tie-aware retrieval metrics of a database split across ranks: exactly ``shc.metrics.evaluate`` on the
    whole database, without any rank ever holding it.

    Every rank passes all queries (codes and labels) and its own database shard (``db_codes``/``db_labels``:
    any disjoint split whose union is the database, in any order; a shard may be empty). Each rank computes
    the per-query Hamming histograms (n_d, r_d) of its shard, the histograms are summed across ranks, and the
    engine's reduction turns them into the Report — the same Report on every rank. ``ties="index"`` depends
    on the order inside each distance bucket, which histograms do not carry: gather the codes instead
    (``Dist.gather_rows``) and call ``shc.metrics.evaluate``.
    """
    from shc.codes import pack_codes
    from shc.metrics import buckets, report_from_buckets

    if ties not in SHARDED_TIES:
        raise ValueError(f"sharded evaluation supports ties {', '.join(SHARDED_TIES)}, got {ties!r}; "
                         "'index' ties need the whole ranking: gather the codes and use shc.metrics.evaluate")
    dist = dist if dist is not None else Dist.current()
    if len(db_codes) == 0:  # nothing here, but this rank still takes part in the sum
        _, q = pack_codes(query_codes, bits)
        n = np.zeros((len(query_codes), q + 1), dtype=np.int64)
        r = n.copy()
    else:
        n, r = buckets(query_codes, db_codes, query_labels, db_labels, threads=threads, bits=bits)
    n, r = dist.sum(n), dist.sum(r)
    return report_from_buckets(n, r, topk=topk, ties=ties, radius=radius, pr_ranks=pr_ranks, threads=threads)


class Evaluator:
    """Encodes query/database with the current model every ``test_map`` epochs and at the end; the final
    evaluation reuses the last epoch's codes when that epoch was just evaluated.

    Each rank encodes its shard of both splits. Index ties need the whole ranking, so the database codes are
    gathered to rank 0 (which also saves them); the tie-aware metrics come from the per-query Hamming
    histograms of each rank's database shard, summed across ranks (``evaluate_sharded``) — the path that
    scales to a database no single process holds. One process is the same code with one shard.
    """

    def __init__(self, model, dataset, cfg, device, dist: Dist):
        self.model, self.dataset, self.cfg, self.device, self.dist = model, dataset, cfg, device, dist
        self.last = None  # (epoch, codes, result)

    def run(self, epoch):
        from shc.train.stage3 import encode_shard
        query, database, dist = self.dataset.query, self.dataset.database, self.dist
        dist.sync_buffers(self.model)  # every shard encoded by the model rank 0 checkpoints
        kw = dict(batch_size=self.cfg.eval_batch_size, device=self.device, dist=dist, progress=self.cfg.progress)
        query_codes = dist.gather_rows(*encode_shard(self.model, query, desc="encode query", **kw), len(query))
        db_shard, db_index = encode_shard(self.model, database, desc="encode database", **kw)
        expected = evaluate_sharded(query_codes, db_shard, query.labels, database.labels[db_index],
                                    dist=dist, topk=self.cfg.topk, ties="expected")
        db_codes = dist.gather_rows_on_main(db_shard, db_index, len(database))
        result = evaluate_codes(query_codes, db_codes, query.labels, database.labels, topk=self.cfg.topk,
                                expected=expected) if dist.is_main else {}
        self.last = (epoch, (query_codes, db_codes), result)
        return (query_codes, db_codes), result

    def maybe(self, epoch: int) -> dict:
        if epoch % self.cfg.test_map and epoch != self.cfg.epochs:
            return {}
        _, result = self.run(epoch)
        return {"mAP": result.get("mAP"), "mAP_expected": result.get("mAP_expected")}

    def final(self):
        if self.last is not None and self.last[0] == self.cfg.epochs:
            return self.last[1], self.last[2]
        return self.run(self.cfg.epochs)


def evaluate_codes(query_codes, db_codes, query_labels, db_labels, *, topk, expected=None) -> dict:
    """mAP at each cut-off with index tie-breaking (what shc-eval reports) and tie-aware ("expected"),
    plus the index report's precision/recall at k and PR curves. ``expected``: the tie-aware Report when
    it was computed already (sharded)."""
    from shc.metrics import evaluate
    report = evaluate(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="index")
    if expected is None:
        expected = evaluate(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")
    full = report.to_dict()
    return {"mAP": full["mAP"], "mAP_expected": expected.to_dict()["mAP"], "pr_curves": report.pr_curves(),
            "retrieval": {k: full[k] for k in ("precision_at_k", "recall_at_k", "precision_at_radius",
                                               "recall_at_radius", "radius", "pr_curve_radius", "pr_curve_rank")}}


def best_on_query(history: list[dict]) -> dict:
    """For each metric separately, the best value over evaluated epochs on the query set (the paper's
    model selection; no held-out split, so labelled as such) with the epoch it came from."""
    best: dict = {}
    for record in history:
        for family in ("mAP", "mAP_expected"):
            for k, v in (record.get(family) or {}).items():
                slot = best.setdefault(family, {})
                if k not in slot or v > slot[k]["value"]:
                    slot[k] = {"value": v, "epoch": record["epoch"]}
    return best
