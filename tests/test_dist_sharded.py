"""Sharded evaluation and the rank helpers, in one process (fast).

The database is split into shards evaluated by threads that stand in for ranks: their histograms meet in a
barrier-synchronised sum, exactly the all_reduce a process group does. The result must equal the
single-process ``shc.metrics.evaluate`` on the whole database — every number of the report, exactly.
The real multi-process checks are in test_dist_run.py.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from shc.metrics import evaluate
from shc.train.dist import Dist
from shc.train.evaluation import evaluate_sharded
from shc.train.launch import default_threads, rank_device
from shc.train.pipeline import TrainConfig, check_world_size


class ThreadGroup:
    """A fake process group: one thread per rank; ``sum`` waits for every rank's array and adds them."""

    def __init__(self, world_size):
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size)
        self.parts = [None] * world_size


@dataclass(frozen=True)
class ThreadDist(Dist):
    group: ThreadGroup = None

    def sum(self, array):
        self.group.parts[self.rank] = array
        self.group.barrier.wait()
        total = np.sum(self.group.parts, axis=0)
        self.group.barrier.wait()  # every rank has read the parts before the next round overwrites them
        return total


def run_sharded(shards, query_codes, query_labels, **kw):
    """evaluate_sharded on every shard (db_codes, db_labels), one thread per rank; the reports in rank order."""
    group = ThreadGroup(len(shards))
    with ThreadPoolExecutor(len(shards)) as pool:
        futures = [pool.submit(evaluate_sharded, query_codes, codes, query_labels, labels,
                               dist=ThreadDist(rank, len(shards), group=group), **kw)
                   for rank, (codes, labels) in enumerate(shards)]
        return [f.result(timeout=60) for f in futures]


def comparable(report):
    d = report.to_dict()
    d.pop("seconds")
    return d


def make_case(rng, n_query, n_db, bits, classes, multi_label):
    """Codes clustered around class centers with heavy ties (few bits flipped), labels single or multi-hot."""
    centers = rng.choice([-1, 1], size=(classes, bits))

    def draw(n):
        if multi_label:
            labels = (rng.random((n, classes)) < 0.3).astype(np.int64)
            base = centers[labels.argmax(1)]
        else:
            labels = rng.integers(0, classes, n)
            base = centers[labels]
        flips = rng.random((n, bits)) < 0.15
        return np.where(flips, -base, base).astype(np.int8), labels

    return draw(n_query) + draw(n_db)


def split_db(rng, n_db, how, world):
    """Index sets of each rank: contiguous (the pipeline's), interleaved, random uneven, or one rank empty."""
    idx = np.arange(n_db)
    if how == "contiguous":
        return [idx[n_db * r // world:n_db * (r + 1) // world] for r in range(world)]
    if how == "interleaved":
        return [idx[r::world] for r in range(world)]
    if how == "random":
        perm = rng.permutation(n_db)
        cuts = np.sort(rng.choice(np.arange(1, n_db), world - 1, replace=False))
        return np.split(perm, cuts)
    return [idx] + [idx[:0]] * (world - 1)  # "one-empty": every other rank holds nothing


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
@pytest.mark.parametrize("how,world", [("contiguous", 2), ("interleaved", 3), ("random", 4), ("one-empty", 2)])
@pytest.mark.parametrize("bits,multi_label", [(16, False), (7, True), (65, False)])
def test_sharded_equals_single_process(ties, how, world, bits, multi_label):
    rng = np.random.default_rng([bits, world, len(how)])
    q_codes, q_labels, db_codes, db_labels = make_case(rng, 37, 211, bits, 6, multi_label)
    topk = (1, 10, 100, 211, 500, "all")
    want = comparable(evaluate(q_codes, db_codes, q_labels, db_labels, topk=topk, ties=ties))
    shards = [(db_codes[i], db_labels[i]) for i in split_db(rng, len(db_codes), how, world)]
    reports = run_sharded(shards, q_codes, q_labels, topk=topk, ties=ties)
    for report in reports:  # every rank gets the whole result
        assert comparable(report) == want
    np.testing.assert_array_equal(reports[0].ap, evaluate(q_codes, db_codes, q_labels, db_labels,
                                                          topk=topk, ties=ties).ap)


def test_single_process_is_the_whole_database():
    rng = np.random.default_rng(5)
    q_codes, q_labels, db_codes, db_labels = make_case(rng, 20, 90, 32, 5, False)
    got = evaluate_sharded(q_codes, db_codes, q_labels, db_labels, dist=Dist(), topk=(5, "all"))
    assert comparable(got) == comparable(evaluate(q_codes, db_codes, q_labels, db_labels, topk=(5, "all"),
                                                  ties="expected"))


def test_index_ties_are_refused_with_advice():
    codes = np.ones((3, 8), np.int8)
    with pytest.raises(ValueError, match="gather the codes"):
        evaluate_sharded(codes, codes, np.zeros(3, int), np.zeros(3, int), dist=Dist(), ties="index")


def test_single_process_dist_is_the_identity():
    d = Dist()
    a = np.arange(6).reshape(3, 2)
    assert d.sum(a) is a and d.from_main("x") == "x" and not d.active and d.is_main
    rows, idx = np.array([[5], [6], [7]]), np.array([2, 0, 1])
    np.testing.assert_array_equal(d.gather_rows_on_main(rows, idx, 3), [[6], [7], [5]])
    model = torch.nn.Linear(2, 2)
    assert d.data_parallel(model) is model


def test_default_threads_split_the_cores(monkeypatch):
    import shc.train.launch as launch
    monkeypatch.setattr(launch, "available_cores", lambda: 2)
    assert default_threads(1) == 1 and default_threads(2) == 1  # this machine: never oversubscribe
    monkeypatch.setattr(launch, "available_cores", lambda: 17)
    assert default_threads(1) == 16 and default_threads(4) == 4 and default_threads(64) == 1


def test_global_batch_must_split_evenly():
    cfg = TrainConfig(dataset="synthetic", batch_size=30).resolved()
    check_world_size(cfg, 3)
    with pytest.raises(ValueError, match="divisible by the 4 processes"):
        check_world_size(cfg, 4)


def test_rank_device():
    assert rank_device(torch.device("cpu"), 3) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        rank_device(torch.device("cuda", 1), 0)  # one fixed GPU cannot serve every rank


def test_dist_timeout_is_checked():
    for bad in (0, -1.0, float("nan"), "10", True):
        with pytest.raises(ValueError, match="dist_timeout"):
            TrainConfig(dataset="synthetic", dist_timeout=bad).resolved()


def test_bad_options_fail_before_any_worker_starts(tmp_path, capsys, monkeypatch):
    from shc.cli import train as cli
    monkeypatch.setattr("shc.train.launch.launch", lambda *a, **k: pytest.fail("a worker was started"))
    args = ["--dataset", "synthetic", "--batch-size", "16", "--out", str(tmp_path / "run")]
    assert cli.main(["--nproc", "3", *args]) == 2  # 16 is not divisible by 3
    err = capsys.readouterr().err
    assert err == "shc-train: error: batch size 16 (the global batch) must be divisible by the 3 processes\n"
    assert cli.main(["--nproc", "0", *args]) == 2
    assert capsys.readouterr().err.startswith("shc-train: error: --nproc must be a positive integer")
    # under torchrun the workers exist already: --nproc must agree with them
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cli.main(["--nproc", "4", "--dataset", "synthetic", "--batch-size", "16"]) == 2
    assert capsys.readouterr().err == ("shc-train: error: [rank 1] --nproc 4 conflicts with the launcher's "
                                       "2 processes per node\n")
    assert not (tmp_path / "run").exists()
