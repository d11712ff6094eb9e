"""Real multi-process runs on the CPU (gloo): the rank helpers and DDP in a 2-process group, the whole
pipeline through ``shc-train --nproc 2``, a crashed worker ending the run with a clear error (and ``--resume``
then finishing it bit for bit), a stuck worker timing out under torchrun.

Each test starts fresh Python processes (torch import, gloo rendezvous), so together they take about a minute
on a busy 2-core machine.
"""
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shc.data import load_dataset
from shc.metrics import evaluate
from shc.train.dist import Dist
from shc.train.evaluation import evaluate_sharded
from shc.train.loop import LoopOptions, train_epochs

SYNTHETIC = ["--dataset", "synthetic", "--data-option", "sizes=(8,3,8)", "--data-option", "image_size=16",
             "--bits", "16", "--batch-size", "16", "--no-progress"]
DEADLINE_S = 180  # far above a healthy run: reaching it means a hang


# ----------------------------------------------------------------------------- in-process API, 2 ranks
def _api_worker(rank, world_size, store, out):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                                         timeout=timedelta(seconds=60))
    dist = Dist.current()
    assert (dist.rank, dist.world_size, dist.active) == (rank, world_size, True)

    # sharded tie-aware evaluation over a database split the pipeline's way (contiguous), and interleaved
    rng = np.random.default_rng(0)  # the same data on every rank
    q_codes = rng.choice([-1, 1], (25, 12)).astype(np.int8)
    db_codes = rng.choice([-1, 1], (101, 12)).astype(np.int8)
    q_labels, db_labels = rng.integers(0, 4, 25), rng.integers(0, 4, 101)
    whole = evaluate(q_codes, db_codes, q_labels, db_labels, ties="expected").to_dict()
    whole.pop("seconds")
    for mine in (np.arange(101 * rank // world_size, 101 * (rank + 1) // world_size), np.arange(rank, 101, world_size)):
        got = evaluate_sharded(q_codes, db_codes[mine], q_labels, db_labels[mine], dist=dist).to_dict()
        got.pop("seconds")
        assert got == whole

    # gathering rows: to every rank, or to rank 0 only
    mine = np.arange(rank, 101, world_size)
    np.testing.assert_array_equal(dist.gather_rows(db_codes[mine], mine, 101), db_codes)
    on_main = dist.gather_rows_on_main(db_codes[mine], mine, 101)
    if rank == 0:
        np.testing.assert_array_equal(on_main, db_codes)
    else:
        assert on_main is None
    assert dist.from_main({"rank": rank}) == {"rank": 0}

    # DDP: each rank trains on its half of every global batch of 16; averaged gradients make that the very
    # training one process does with batch 16 (a BatchNorm-free model, so nothing depends on the split)
    data = load_dataset("synthetic", seed=0, sizes=(8, 3, 8), image_size=16)

    def trained(d):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
        opts = LoopOptions(epochs=2, lr=1e-3, batch_size=16, progress=False)
        history = train_epochs(model, data.train, lambda out, y, _: torch.nn.functional.cross_entropy(out, y), opts, name="t",
                               checkpoint_path=f"{out}/ckpt-{rank}-{d.world_size}.pt", fp="x", dist=d)
        return model, history

    ddp_model, ddp_history = trained(dist)
    one_model, one_history = trained(Dist())  # this rank alone, no collectives
    for a, b in zip(ddp_model.parameters(), one_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in ddp_history] == pytest.approx([r["loss"] for r in one_history], rel=1e-5)
    assert os.path.exists(f"{out}/ckpt-0-2.pt") and not os.path.exists(f"{out}/ckpt-1-2.pt")  # rank 0 writes
    torch.distributed.destroy_process_group()


def test_two_rank_group_api(tmp_path):
    mp.spawn(_api_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)


# ------------------------------------------------------------------------------------ the CLI, end to end
def shc_train(*args, env=None, launcher=("-m", "shc.cli.train")):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, timeout=DEADLINE_S,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    return proc, time.perf_counter() - start


RUN = [*SYNTHETIC, "--epoch", "3", "--classify_epoch", "2", "--test_map", "2"]


def load_codes(out):
    return {n: np.load(out / "codes" / f"{n}.npy") for n in ("query_codes", "db_codes", "query_labels", "db_labels")}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "run"
    proc, _ = shc_train("--nproc", "2", *RUN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_process_run_completes_all_stages(full_run):
    out = full_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["centers"] == "shc"
    assert len(metrics["stage1"]["history"]) == 2 and [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    for name in ("similarity.npy", "centers.npy", "checkpoints/classifier.pt", "checkpoints/hashnet.pt",
                 "pr_curve.png", "training.png"):
        assert (out / name).is_file(), name
    codes = load_codes(out)
    assert codes["db_codes"].shape == (80, 16) and codes["query_codes"].shape == (30, 16)
    args = (codes["query_codes"], codes["db_codes"], codes["query_labels"], codes["db_labels"])
    # index ties from the gathered codes; tie-aware from histograms summed over the two database shards
    assert metrics["mAP"] == evaluate(*args, topk=(100, 1000, "all"), ties="index").to_dict()["mAP"]
    assert metrics["mAP_expected"] == evaluate(*args, topk=(100, 1000, "all"), ties="expected").to_dict()["mAP"]
    # the shards were encoded by exactly the model rank 0 saved (BatchNorm statistics synchronised)
    from shc.models import HashNet, create_backbone
    from shc.train.stage3 import encode_split
    net = HashNet(create_backbone("compact", in_channels=3, small_input=True), 16)
    net.load_state_dict(torch.load(out / "checkpoints" / "hashnet.pt", weights_only=True)["model"])
    data = load_dataset("synthetic", seed=0, sizes=(8, 3, 8), image_size=16)
    np.testing.assert_array_equal(encode_split(net, data.database, batch_size=64, device="cpu", progress=False),
                                  codes["db_codes"])


def _fault_injector(tmp_path, code):
    """A sitecustomize (only this test puts it on PYTHONPATH) that injects a worker failure; ``code`` runs in
    every worker after its imports."""
    (tmp_path / "sitecustomize.py").write_text("import os, time\n" + code)
    return {"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}


CRASH_AFTER_STAGE3_EPOCH_2 = """
import shc.train.loop as loop
_save = loop.save_checkpoint
def save(path, state, fp):
    _save(path, state, fp)
    if str(path).endswith("hashnet.pt") and state["epoch"] == 2:
        os._exit(3)  # rank 0 (the only writer) dies right after its stage-3 epoch-2 checkpoint
loop.save_checkpoint = save
"""

HANG_RANK_1_AT_STAGE3 = """
if os.environ.get("RANK") == "1":
    import shc.train.stage3 as stage3
    stage3.train_hashnet = lambda *args, **kwargs: time.sleep(3600)
"""


def test_worker_crash_ends_the_run_and_resume_finishes_it(full_run, tmp_path):
    out = tmp_path / "run"
    crash = _fault_injector(tmp_path, CRASH_AFTER_STAGE3_EPOCH_2)
    proc, _ = shc_train("--nproc", "2", *RUN, "--out", str(out), env=crash)
    assert proc.returncode == 3
    assert "shc-train: error: worker rank 0 of 2 exited with status 3 (its messages are above)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "metrics.json").exists()
    # every rank resumes from rank 0's checkpoint: the result is the uninterrupted run's, bit for bit
    proc, _ = shc_train("--nproc", "2", *RUN, "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage 1: reusing" in proc.stdout and "resuming from" in proc.stdout
    a, b = load_codes(full_run), load_codes(out)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    history = [json.loads((d / "metrics.json").read_text())["history"] for d in (full_run, out)]
    assert [r["loss"] for r in history[0]] == [r["loss"] for r in history[1]]


def test_stuck_worker_times_out_under_torchrun(tmp_path):
    proc, seconds = shc_train(*SYNTHETIC, "--centers", "csq", "--dist-timeout", "5", "--out", str(tmp_path / "run"),
                              env=_fault_injector(tmp_path, HANG_RANK_1_AT_STAGE3),
                              launcher=("-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                                        "-m", "shc.cli.train"))
    assert proc.returncode != 0
    # rank 0's collective gave up after --dist-timeout and said why, in one line; torchrun then stopped rank 1
    line = next(line for line in proc.stderr.splitlines() if line.startswith("shc-train: error: [rank 0]"))
    assert "Timed out" in line and "--dist-timeout 5 s" in line
    assert seconds < DEADLINE_S


def test_two_process_run_on_image_files_shares_one_cache_build(tmp_path):
    """Both ranks load a file dataset: one builds the decoded-image cache, the other waits for it and reads it."""
    from shc.data.testing import make_coco_like

    root = make_coco_like(str(tmp_path / "coco"), (16, 6, 24), size=(64, 48))
    cache, out = tmp_path / "cache", tmp_path / "run"
    proc, _ = shc_train("--nproc", "2", "--dataset", "coco", "--data-root", root, "--bits", "16", "--backbone",
                        "compact", "--centers", "csq", "--data-option", "resize_size=40", "--data-option",
                        "crop_size=32", "--epoch", "1", "--test_map", "1", "--batch-size", "8", "--no-progress",
                        "--image-cache", str(cache), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stores = [p for p in cache.iterdir() if p.is_dir()]
    assert len(stores) == 1 and not stores[0].name.endswith(".partial")
    assert np.load(out / "codes" / "db_codes.npy").shape == (24, 16)
