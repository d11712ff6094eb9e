"""shc-compare end to end on a tiny synthetic grid: files, numbers vs the runs, shared stage 1, reuse, bad input."""
import json

import numpy as np
import pytest

from shc.cli.compare import main

TINY = ["--dataset", "synthetic", "--data-option", "sizes=(6,2,6)", "--data-option", "image_size=16",
        "--epoch", "1", "--classify_epoch", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]
GRID = ["--centers", "csq", "shc", "--bits", "8", "16", "--seeds", "0", "1"]


def random_codes(path, rows, bits, seed):
    np.save(path, np.random.default_rng(seed).choice(np.int8([-1, 1]), (rows, bits)))
    return str(path)


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """Codes "made elsewhere" (random, 8 bits) for the tiny split (20 queries, 60 database items): seeds 0 and 1."""
    tmp = tmp_path_factory.mktemp("external")
    return {seed: (random_codes(tmp / f"q{seed}.npy", 20, 8, 10 + seed), random_codes(tmp / f"d{seed}.npy", 60, 8,
                                                                                     20 + seed)) for seed in (0, 1)}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, external):
    import shc.train.plots

    out = tmp_path_factory.mktemp("compare")
    # each run's training.png is shc-train's (tested there) and half of a tiny run's time: skipped here
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shc.train.plots, "plot_history", lambda *a, **k: None)
        assert main(TINY + GRID + ["--out", str(out), "--external", "rand", *external[0],
                                   "--external", "rand@1", *external[1]]) == 0
    return out


def test_writes_results_and_figures(grid):
    for name in ("results.json", "results.md", "results.csv", "results.tex", "pr_8bits.png", "pr_16bits.png",
                 "pr_8bits.pdf", "pr_16bits.pdf", "map_vs_bits.png", "map_vs_bits.pdf"):
        assert (grid / name).stat().st_size > 0, name
    results = json.loads((grid / "results.json").read_text())
    runs = [r for r in results["runs"] if "external" not in r]
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
    row = next(x for x in results["summary"] if x["method"] == "csq" and x["bits"] == 16)
    values = [r["mAP"]["all"] for r in runs if r["centers"] == "csq" and r["bits"] == 16]
    assert row["mAP"]["all"]["mean"] == pytest.approx(np.mean(values))
    assert row["mAP"]["all"]["std"] == pytest.approx(np.std(values, ddof=1))
    paired = {(p["baseline"], p["bits"]): p for p in results["paired"]}
    assert set(paired) == {("csq", 8), ("csq", 16), ("rand", 8)}
    shc0, csq0 = (next(r for r in runs if r["centers"] == c and r["bits"] == 8 and r["seed"] == 0) for c in ("shc", "csq"))
    shc1, csq1 = (next(r for r in runs if r["centers"] == c and r["bits"] == 8 and r["seed"] == 1) for c in ("shc", "csq"))
    assert paired[("csq", 8)]["mAP"]["all"]["mean"] == pytest.approx(
        (shc0["mAP"]["all"] - csq0["mAP"]["all"] + shc1["mAP"]["all"] - csq1["mAP"]["all"]) / 2)
    text = (grid / "results.md").read_text()
    assert text.count("\n| 8 | csq |") == text.count("\n| 8 | shc |") == text.count("\n| 16 | shc |") == 1
    assert text.count("| shc − csq |") == 2 + 2  # the paired table and the Wilcoxon table, one line per length
    assert "tie-aware mAP@all" in text and "hashing epochs: 1" in text


def test_runs_record_their_query_and_database_rows(grid):
    """codes/{query,db}_index.npy: the rows of the dataset's source arrays, in the run's order (what the split
    holds: shc.data's source_index), so that external codes can encode the same items."""
    from shc.data import load_dataset
    for seed in (0, 1):
        codes = grid / "runs" / f"shc-8bits-seed{seed}" / "codes"
        ds = load_dataset("synthetic", seed=seed, sizes=(6, 2, 6), image_size=16)
        for name, split in (("query", ds.query), ("db", ds.database)):
            rows = np.load(codes / f"{name}_index.npy")
            assert np.array_equal(rows, split.source_index) and len(rows) == len(np.load(codes / f"{name}_labels.npy"))
    assert not set(np.load(codes / "query_index.npy")) & set(np.load(codes / "db_index.npy"))


def test_stage1_trained_once_per_seed(grid):
    cache = sorted(p.name for p in (grid / "stage1-cache").iterdir())
    assert len(cache) == 2  # seeds 0 and 1; shared by shc at 8 and 16 bits
    s8 = np.load(grid / "runs" / "shc-8bits-seed0" / "similarity.npy")
    s16 = np.load(grid / "runs" / "shc-16bits-seed0" / "similarity.npy")
    assert np.array_equal(s8, s16)
    assert not (grid / "runs" / "csq-8bits-seed0" / "similarity.npy").exists()


def test_rerun_reuses_finished_runs(grid, external, monkeypatch, capsys):
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
    assert main(TINY + GRID + ["--out", str(grid), "--external", "rand", *external[0],
                               "--external", "rand@1", *external[1]]) == 0
    after = json.loads((grid / "results.json").read_text())
    for a, b in zip(after["runs"], before["runs"]):  # the external codes' evaluation is timed again
        if "external" in a:
            a["seconds"]["eval"] = b["seconds"]["eval"]
    assert after == before


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


def test_per_query_ap_of_every_run_and_the_wilcoxon_tests(grid):
    """Each run's per-query AP (from its codes/) averages to its mAP; the Wilcoxon rows are scipy's test on the
    concatenated (seed, query) pairs."""
    from scipy.stats import wilcoxon

    from shc.metrics import evaluate
    results = json.loads((grid / "results.json").read_text())
    assert results["per_query_ap"]["columns"] == ["100", "1000", "all"]
    ap = {}
    for r in results["runs"]:
        name = (f"external-{r['method']}" if "external" in r else r["method"]) + f"-{r['bits']}bits-seed{r['seed']}"
        ap[(r["method"], r["bits"], r["seed"])] = a = np.load(grid / results["per_query_ap"]["files"][name])
        assert a.shape == (20, 3)
        assert a.mean(axis=0) == pytest.approx([r["mAP"][k] for k in ("100", "1000", "all")], abs=1e-12)
        if "external" not in r:
            codes = grid / "runs" / name / "codes"
            report = evaluate(*(np.load(codes / f"{n}.npy") for n in ("query_codes", "db_codes", "query_labels",
                                                                       "db_labels")), topk=(100, 1000, "all"))
            assert np.array_equal(a, report.ap)
    tests = {(w["baseline"], w["bits"], w["cutoff"]): w for w in results["wilcoxon"]}
    assert set(tests) == {(b, bits, k) for b, bits in (("csq", 8), ("csq", 16), ("rand", 8))
                          for k in ("100", "1000", "all")}
    w = tests[("csq", 8, "all")]
    ours = np.concatenate([ap[("shc", 8, s)][:, 2] for s in (0, 1)])
    theirs = np.concatenate([ap[("csq", 8, s)][:, 2] for s in (0, 1)])
    assert w["seeds"] == [0, 1] and w["n_pairs"] == 40
    assert w["mean_difference"] == pytest.approx(np.mean(ours - theirs), abs=1e-15)
    assert w["p_value"] == wilcoxon(ours, theirs).pvalue


def test_external_codes_on_the_table_and_figure(grid, external):
    """External codes are evaluated on their seed's split (the labels in that seed's codes/) and appear in every
    table; SHC's gain over them is paired by seed."""
    from shc.metrics import evaluate
    results = json.loads((grid / "results.json").read_text())
    ext = {r["seed"]: r for r in results["runs"] if r["method"] == "rand"}
    assert set(ext) == {0, 1} and all(r["bits"] == 8 and r["external"]["query"] == external[r["seed"]][0]
                                      for r in ext.values())
    for seed, r in ext.items():
        codes = grid / "runs" / f"csq-16bits-seed{seed}" / "codes"
        report = evaluate(np.load(external[seed][0]), np.load(external[seed][1]), np.load(codes / "query_labels.npy"),
                          np.load(codes / "db_labels.npy"), topk=(100, 1000, "all"))
        assert r["mAP"] == report.to_dict()["mAP"]
    row = next(x for x in results["summary"] if x["method"] == "rand")
    assert row["bits"] == 8 and row["seeds"] == [0, 1]
    assert "| 8 | rand | 0,1 |" in (grid / "results.md").read_text()
    assert (grid / "results.csv").read_text().count("\nindex,rand,8,") == 3
    tex = (grid / "results.tex").read_text()
    assert "\\toprule" in tex and "\nrand & " in tex
    gain = next(p for p in results["paired"] if p["baseline"] == "rand")
    assert gain["seeds"] == [0, 1] and gain["mAP"]["all"]["ci95"] is not None


@pytest.mark.parametrize("extra, message", [
    (["--external", "csq", "Q", "D"], "clashes with a method of the grid"),
    (["--external", "rand@7", "Q", "D"], "seed 7 is not one of the grid's seeds"),
    (["--external", "wide", "Q12", "D12"], "codes of 12 bits, but no grid cell has that length (--bits 8 16)"),
    (["--external", "rows", "Q", "D5"], "5 rows, but the grid's database for seed 0 hold 60 items"),
    (["--external", "rand", "Q", "D", "--external", "rand", "Q", "D"], "given twice for seed 0"),
])
def test_bad_external_codes_are_one_line_and_exit_2(grid, tmp_path, capsys, monkeypatch, extra, message):
    import shc.train.pipeline

    files = {"Q": random_codes(tmp_path / "q.npy", 20, 8, 0), "D": random_codes(tmp_path / "d.npy", 60, 8, 1),
             "Q12": random_codes(tmp_path / "q12.npy", 20, 12, 0), "D12": random_codes(tmp_path / "d12.npy", 60, 12, 1),
             "D5": random_codes(tmp_path / "d5.npy", 5, 8, 1)}
    monkeypatch.setattr(shc.train.pipeline, "run_pipeline", lambda cfg: pytest.fail(f"trained {cfg.out}"))
    assert main(TINY + GRID + ["--out", str(grid)] + [files.get(a, a) for a in extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shc-compare: error: --external") and message in err and len(err.strip().splitlines()) == 1
