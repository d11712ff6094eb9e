"""shc.compare's pure parts: grid planning, aggregation (mean ± sample std), mean PR curves, the table."""
import dataclasses
import math

import pytest

from shc.compare import (Cell, finished_metrics, mean_pr_curve, mean_std, paired_differences, plan_grid,
                         results_markdown, summarize)


def fake_run(centers, bits, seed, value, expected=None, total=10.0):
    expected = value - 0.01 if expected is None else expected
    return {"method": centers, "bits": bits, "seed": seed,
            "mAP": {"100": value, "1000": value - 0.1, "all": value - 0.2},
            "mAP_expected": {"100": expected, "1000": expected - 0.1, "all": expected - 0.2},
            "seconds": {"total": total}}


def test_method_entries_all_labels_and_options():
    cells = plan_grid(["all", "shc-paper=shc:polish_passes=0,eta=0.25", "shc"], [16], [0])
    from shc.methods import list_methods
    assert [c.label for c in cells] == [*list_methods(), "shc-paper"]  # an identical repeat (shc) is dropped
    paper = cells[-1]
    assert (paper.method, paper.options) == ("shc", (("eta", 0.25), ("polish_passes", 0)))
    assert paper.dirname() == "shc-paper-16bits-seed0" and Cell("csq", 16, 0).method == "csq"


def test_plan_grid_order_and_size():
    cells = plan_grid(["csq", "shc"], [16, 32], [0, 1])
    assert len(cells) == 8
    assert cells[:4] == [Cell("csq", 16, 0), Cell("shc", 16, 0), Cell("csq", 32, 0), Cell("shc", 32, 0)]
    assert {c.seed for c in cells[4:]} == {1}  # seed-major: a seed's stage 1 is reused before the next seed
    assert cells[0].dirname() == "csq-16bits-seed0"


@pytest.mark.parametrize("args, match", [
    ((["csq", "foo"], [16], [0]), "unknown method 'foo'"),
    ((["shc-paper=shc:polish=0"], [16], [0]), "method shc takes no option 'polish'"),
    ((["shc-paper=shc:polish_passes=x"], [16], [0]), "option polish_passes takes an integer"),
    ((["a=shc", "a=csq"], [16], [0]), "given twice with different meanings"),
    ((["a b=shc"], [16], [0]), "give NAME, all, or LABEL=NAME"),
    ((["x=shc:"], [16], [0]), "give NAME, all, or LABEL=NAME"),
    ((["csq", "csq"], [16], [0]), "duplicate"),
    ((["csq"], [0], [0]), "bits"),
    ((["csq"], [16], [-1]), "seeds"),
    ((["csq"], [16.5], [0]), "bits"),
    (([], [16], [0]), "at least one"),
])
def test_plan_grid_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        plan_grid(*args)


def test_mean_std_is_sample_std():
    mean, std = mean_std([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and std == pytest.approx(0.2)  # sqrt(((.2)^2 + 0 + (.2)^2) / 2)
    assert mean_std([0.3]) == (0.3, None)
    with pytest.raises(ValueError):
        mean_std([])


def test_summarize_groups_by_method_and_length():
    runs = [fake_run("csq", 16, 0, 0.8), fake_run("csq", 16, 1, 0.6, total=20.0), fake_run("shc", 16, 0, 0.9),
            fake_run("shc", 8, 0, 0.5)]
    rows = summarize(runs)
    assert [(r["bits"], r["method"]) for r in rows] == [(8, "shc"), (16, "shc"), (16, "csq")]  # the seed's order
    csq = rows[2]
    assert csq["n"] == 2 and csq["seeds"] == [0, 1] and csq["seconds"] == 15.0
    assert csq["mAP"]["100"]["mean"] == pytest.approx(0.7)
    assert csq["mAP"]["all"]["mean"] == pytest.approx(0.5)
    assert csq["mAP"]["100"]["std"] == pytest.approx(math.sqrt(0.02))
    assert csq["mAP_expected"]["100"]["mean"] == pytest.approx(0.69)
    assert rows[1]["mAP"]["100"]["std"] is None


def test_mean_pr_curve():
    a = {"k": [1, 2, 3], "precision": [1.0, 0.5, 0.2], "recall": [0.1, 0.2, 0.3]}
    b = {"k": [1, 2, 3], "precision": [0.0, 0.5, 0.4], "recall": [0.3, 0.4, 0.5]}
    precision, recall = mean_pr_curve([a, b])
    assert precision == pytest.approx([0.5, 0.5, 0.3]) and recall == pytest.approx([0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="different ranks"):
        mean_pr_curve([a, {**b, "k": [1, 2, 4]}])
    with pytest.raises(ValueError):
        mean_pr_curve([])


def test_results_markdown_marks_best_and_lists_missing():
    runs = [fake_run("csq", 16, 0, 0.8, expected=0.9), fake_run("csq", 16, 1, 0.6, expected=0.9),
            fake_run("shc", 16, 0, 0.75, expected=0.7), fake_run("shc", 16, 1, 0.75, expected=0.7)]
    text = results_markdown(runs, {"dataset": "x", "hashing epochs": 3}, {16: "pr_16bits.png"},
                            missing=[Cell("mds", 16, 0)])
    lines = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| 16 ")}
    assert set(lines) == {"csq", "shc"}
    csq_cells = [c.strip() for c in lines["csq"].split("|")[4:-2]]
    shc_cells = [c.strip() for c in lines["shc"].split("|")[4:-2]]
    # index mAP@100: shc's 0.75 beats csq's 0.7; tie-aware: csq's 0.9 beats shc's 0.7
    assert shc_cells[0] == "**0.7500 ± 0.0000**" and csq_cells[0] == f"0.7000 ± {math.sqrt(0.02):.4f}"
    assert csq_cells[3].startswith("**0.9000") and not shc_cells[3].startswith("**")
    assert "hashing epochs: 3" in text and "(pr_16bits.png)" in text and "mds-16bits-seed0" in text
    assert "No finished runs" in results_markdown([], {})


def test_finished_metrics_matches_configuration(tmp_path):
    import json

    from shc.train import TrainConfig

    from shc.integrity import write_manifest

    cfg = TrainConfig(dataset="synthetic", bits=8, out=str(tmp_path), threads=1).resolved()
    assert finished_metrics(tmp_path, cfg) is None  # nothing there
    (tmp_path / "metrics.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "mAP": {}}))
    codes = [f"codes/{name}.npy" for name in ("query_codes", "db_codes", "query_labels", "db_labels")]
    (tmp_path / "codes").mkdir()
    for name in codes:
        (tmp_path / name).write_bytes(b"x")
    assert finished_metrics(tmp_path, cfg) is None  # no manifest: an unfinished (re)run
    write_manifest(tmp_path, "model", ["metrics.json", *codes])
    assert finished_metrics(tmp_path, cfg) is not None
    (tmp_path / codes[1]).write_bytes(b"y")  # codes changed since: not the run's
    assert finished_metrics(tmp_path, cfg) is None
    (tmp_path / codes[1]).write_bytes(b"x")
    # where and how it ran does not matter; what it computed does
    assert finished_metrics(tmp_path, dataclasses.replace(cfg, out="elsewhere", threads=2, progress=False))
    assert finished_metrics(tmp_path, dataclasses.replace(cfg, epochs=cfg.epochs + 1)) is None
    (tmp_path / "metrics.json").write_text("{truncated")
    assert finished_metrics(tmp_path, cfg) is None
    write_manifest(tmp_path, "model", ["metrics.json", *codes])
    assert finished_metrics(tmp_path, cfg) is None


def test_paired_differences_by_seed():
    runs = [fake_run("shc", 16, 0, 0.80), fake_run("csq", 16, 0, 0.70), fake_run("shc", 16, 1, 0.60),
            fake_run("csq", 16, 1, 0.65), fake_run("shc", 16, 2, 0.9),  # seed 2 has no csq partner
            fake_run("shc", 32, 0, 0.5)]                                # no csq at 32 bits at all
    rows = paired_differences(runs, "shc", "csq")
    assert len(rows) == 1 and rows[0]["bits"] == 16 and rows[0]["seeds"] == [0, 1]
    stat = rows[0]["mAP"]["100"]
    assert stat["mean"] == pytest.approx(0.025) and stat["std"] == pytest.approx(math.sqrt(2 * 0.075 ** 2))
    assert (stat["wins"], stat["losses"]) == (1, 1)
    assert stat["ci95"] == pytest.approx([0.025 - 12.706204736 * 0.075, 0.025 + 12.706204736 * 0.075])
    text = results_markdown(runs, {}, paired=rows)
    assert "| 16 | shc − csq | +0.0250 [-0.9280, +0.9780] (1/1) |" in text
