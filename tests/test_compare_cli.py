"""shc-compare end to end on a tiny synthetic grid: files, numbers vs the runs, shared stage 1, reuse, bad input."""
import json

import numpy as np
import pytest

from shc.cli.compare import main

TINY = ["--dataset", "synthetic", "--data-option", "sizes=(6,2,6)", "--data-option", "image_size=16",
        "--epoch", "1", "--classify_epoch", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]
GRID = ["--centers", "csq", "shc", "--bits", "8", "16", "--seeds", "0", "1"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    import shc.train.plots

    out = tmp_path_factory.mktemp("compare")
    # each run's training.png is shc-train's (tested there) and half of a tiny run's time: skipped here
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shc.train.plots, "plot_history", lambda *a, **k: None)
        assert main(TINY + GRID + ["--out", str(out)]) == 0
    return out


def test_writes_results_and_figures(grid):
    for name in ("results.json", "results.md", "pr_8bits.png", "pr_16bits.png"):
        assert (grid / name).stat().st_size > 0, name
    results = json.loads((grid / "results.json").read_text())
    runs = results["runs"]
    assert len(runs) == 8
    assert {(r["centers"], r["bits"], r["seed"]) for r in runs} == {
        (c, b, s) for c in ("csq", "shc") for b in (8, 16) for s in (0, 1)}
    for r in runs:
        assert set(r) >= {"centers", "bits", "seed", "mAP", "mAP_expected", "seconds"}
        assert set(r["mAP"]) == set(r["mAP_expected"]) == {"100", "1000", "all"}
        # each entry is exactly its run's metrics.json
        metrics = json.loads((grid / "runs" / f"{r['centers']}-{r['bits']}bits-seed{r['seed']}" /
                              "metrics.json").read_text())
        assert r["mAP"] == metrics["mAP"] and r["mAP_expected"] == metrics["mAP_expected"]
        assert metrics["epochs"] == 1 and metrics["config"]["batch_size"] == 16  # shc-train options passed through
    # the summary is the mean and sample std of the runs
    row = next(x for x in results["summary"] if x["centers"] == "csq" and x["bits"] == 16)
    values = [r["mAP"]["all"] for r in runs if r["centers"] == "csq" and r["bits"] == 16]
    assert row["mAP"]["all"]["mean"] == pytest.approx(np.mean(values))
    assert row["mAP"]["all"]["std"] == pytest.approx(np.std(values, ddof=1))
    paired = {(p["baseline"], p["bits"]): p for p in results["paired"]}
    assert set(paired) == {("csq", 8), ("csq", 16)}
    shc0, csq0 = (next(r for r in runs if r["centers"] == c and r["bits"] == 8 and r["seed"] == 0) for c in ("shc", "csq"))
    shc1, csq1 = (next(r for r in runs if r["centers"] == c and r["bits"] == 8 and r["seed"] == 1) for c in ("shc", "csq"))
    assert paired[("csq", 8)]["mAP"]["all"]["mean"] == pytest.approx(
        (shc0["mAP"]["all"] - csq0["mAP"]["all"] + shc1["mAP"]["all"] - csq1["mAP"]["all"]) / 2)
    text = (grid / "results.md").read_text()
    assert text.count("\n| 8 | csq |") == text.count("\n| 8 | shc |") == text.count("\n| 16 | shc |") == 1
    assert text.count("| shc − csq |") == 2  # the paired table, one line per length
    assert "tie-aware mAP@all" in text and "hashing epochs: 1" in text


def test_stage1_trained_once_per_seed(grid):
    cache = sorted(p.name for p in (grid / "stage1-cache").iterdir())
    assert len(cache) == 2  # seeds 0 and 1; shared by shc at 8 and 16 bits
    s8 = np.load(grid / "runs" / "shc-8bits-seed0" / "similarity.npy")
    s16 = np.load(grid / "runs" / "shc-16bits-seed0" / "similarity.npy")
    assert np.array_equal(s8, s16)
    assert not (grid / "runs" / "csq-8bits-seed0" / "similarity.npy").exists()


def test_rerun_reuses_finished_runs(grid, monkeypatch, capsys):
    import shc.train.pipeline

    def no_training(cfg):
        raise AssertionError(f"retrained {cfg.out}")

    before = json.loads((grid / "results.json").read_text())
    monkeypatch.setattr(shc.train.pipeline, "run_pipeline", no_training)
    # a subset of the grid aggregates only that subset
    assert main(TINY + ["--centers", "shc", "--bits", "16", "--seeds", "0", "1", "--out", str(grid)]) == 0
    subset = json.loads((grid / "results.json").read_text())
    assert len(subset["runs"]) == 2
    assert "results cover the 2 runs of this grid" in capsys.readouterr().out  # and says the rest is there
    assert main(TINY + GRID + ["--out", str(grid)]) == 0
    assert json.loads((grid / "results.json").read_text()) == before


@pytest.mark.parametrize("argv", [["--bits", "0"], ["--seeds", "0", "0"], ["--epoch", "0"],
                                  ["--dataset", "no-such-set"]])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv):
    assert main(["--no-progress", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shc-compare: error:") and len(err.strip().splitlines()) == 1


def test_unknown_method_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--centers", "foo", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_nproc_is_refused(capsys):
    from shc.cli.compare import main
    assert main(["--dataset", "synthetic", "--nproc", "2", "--out", "unused"]) == 2
    assert "--nproc is not supported" in capsys.readouterr().err
