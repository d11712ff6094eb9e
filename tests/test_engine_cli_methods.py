"""shc-eval with several methods' codes (--codes): one table, one PR figure, per-query AP against the slow
reference of tests/test_engine_metrics.py, and the bad input of these options."""
import csv
import json

import numpy as np
import pytest
from test_engine_metrics import ref_report

from shc.cli.eval import main
from shc.metrics import evaluate
from shc.report_tables import latex_table, markdown_table, table_cells

TOPK = ("5", "20", "all")


@pytest.fixture
def methods(tmp_path):
    """Two methods' codes of the same 12 queries x 40 items: a good one (.npy, ±1) and a noisy one (.txt, {0,1})."""
    rng = np.random.default_rng(1)
    centers = rng.choice([-1, 1], (4, 16))
    ql, dl = rng.integers(0, 4, 12), rng.integers(0, 4, 40)
    good = [centers[lab] * np.where(rng.random((len(lab), 16)) < 0.1, -1, 1) for lab in (ql, dl)]
    noisy = [centers[lab] * np.where(rng.random((len(lab), 16)) < 0.35, -1, 1) for lab in (ql, dl)]
    np.save(tmp_path / "good_q.npy", good[0].astype(np.int8))
    np.save(tmp_path / "good_d.npy", good[1].astype(np.int8))
    np.savetxt(tmp_path / "noisy_q.txt", noisy[0] > 0, fmt="%d")
    np.savetxt(tmp_path / "noisy_d.txt", noisy[1] > 0, fmt="%d")
    np.save(tmp_path / "ql.npy", ql)
    np.save(tmp_path / "dl.npy", dl)
    args = ["--codes", "shc", str(tmp_path / "good_q.npy"), str(tmp_path / "good_d.npy"),
            "--codes", "my_itq", str(tmp_path / "noisy_q.txt"), str(tmp_path / "noisy_d.txt"),
            "--query-labels", str(tmp_path / "ql.npy"), "--db-labels", str(tmp_path / "dl.npy"), "--topk", *TOPK]
    return tmp_path, args, {"shc": good, "my_itq": noisy}, (ql, dl)


def test_several_methods_in_one_call(methods, capsys):
    tmp, args, codes, (ql, dl) = methods
    out = [tmp / "out" / name for name in ("t.md", "t.tex", "t.csv", "pr.png", "pr.pdf", "ap.csv", "ap.npz", "r.json")]
    assert main(args + ["--table", str(out[0]), "--pr-plot", str(out[3]), "--per-query", str(out[5]),
                        "--json", str(out[7])]) == 0
    assert main(args + ["--table", str(out[1]), "--pr-plot", str(out[4]), "--per-query", str(out[6]),
                        "--quiet"]) == 0
    assert main(args + ["--table", str(out[2]), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "== shc ==" in printed and "== my_itq ==" in printed
    reports = {name: evaluate(q, d, ql, dl, topk=TOPK) for name, (q, d) in codes.items()}
    # JSON: every method's report
    got = json.loads(out[7].read_text())
    assert list(got) == ["shc", "my_itq"]
    for name, report in reports.items():
        assert got[name]["mAP"] == report.to_dict()["mAP"] and got[name]["pr_curve_rank"] == report.to_dict()[
            "pr_curve_rank"]
    # the tables: exactly the renderers' text over these reports
    runs = [{"method": name, "bits": 16, "mAP": r.to_dict()["mAP"]} for name, r in reports.items()]
    cells = table_cells(runs, families=(("mAP", "index"),))
    assert out[0].read_text() == markdown_table(cells) and out[1].read_text() == latex_table(cells)
    assert "| shc | **" in out[0].read_text()  # the good codes win every column
    rows = list(csv.DictReader(out[2].open()))
    assert [(r["method"], r["cutoff"]) for r in rows] == [(m, k) for m in ("shc", "my_itq") for k in TOPK]
    assert float(rows[5]["mean"]) == reports["my_itq"].mAP["all"]
    # figures
    assert out[3].read_bytes()[:4] == b"\x89PNG" and out[4].read_bytes()[:5] == b"%PDF-"
    # per-query AP: the engine's, equal to the slow reference's
    npz = np.load(out[6])
    table = list(csv.DictReader(out[5].open()))
    assert list(table[0]) == ["query"] + [f"{m}@{k}" for m in ("shc", "my_itq") for k in TOPK]
    for name, (q, d) in codes.items():
        ref = ref_report(q > 0, d > 0, ql, dl, list(TOPK), "index", 2, [])
        np.testing.assert_allclose(npz[name], ref["ap"], rtol=0, atol=1e-12)
        for j, k in enumerate(TOPK):
            assert [float(r[f"{name}@{k}"]) for r in table] == npz[name][:, j].tolist()
    assert [int(r["query"]) for r in table] == list(range(12))


def test_single_pair_per_query_npy_and_plot(methods):
    tmp, args, codes, (ql, dl) = methods
    single = ["--query-codes", args[2], "--db-codes", args[3]] + args[8:]
    assert main(single + ["--per-query", str(tmp / "ap.npy"), "--pr-plot", str(tmp / "pr.png"),
                          "--table", str(tmp / "t.md"), "--ties", "pessimistic", "--quiet"]) == 0
    q, d = codes["shc"]
    ref = ref_report(q > 0, d > 0, ql, dl, list(TOPK), "pessimistic", 2, [])
    np.testing.assert_allclose(np.load(tmp / "ap.npy"), ref["ap"], rtol=0, atol=1e-10)
    assert "**pessimistic ties**" in (tmp / "t.md").read_text() and "| codes |" in (tmp / "t.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--table", "{tmp}/t.xlsx"], "--table {tmp}/t.xlsx: cannot write a table as '.xlsx'; give a file ending in "
                                  ".md, .csv, .tex"),
    (["--pr-plot", "{tmp}/pr.jpg"], "--pr-plot {tmp}/pr.jpg: cannot write '.jpg'; give a file ending in .png, .pdf"),
    (["--per-query", "{tmp}/ap.npy"], "a .npy holds one method's AP; for 2 methods give .npz"),
    (["--per-query", "{tmp}/ap.json"], "--per-query {tmp}/ap.json: cannot write '.json'"),
    (["--pr-curve", "{tmp}/pr.png"], "for several methods use --pr-plot"),
    (["--codes", "shc", "{tmp}/good_q.npy", "{tmp}/good_d.npy"], "--codes shc: the name is given twice"),
    (["--query-codes", "{tmp}/good_q.npy", "--db-codes", "{tmp}/good_d.npy"], "not both"),
    (["--codes", "short", "{tmp}/good_q.npy", "{tmp}/short.npy"],
     "--codes short: --db-labels {tmp}/dl.npy: 40 class ids but 39 database codes"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(methods, capsys, extra, message):
    tmp, args, _, _ = methods
    np.save(tmp / "short.npy", np.ones((39, 16), np.int8))  # one database row short of the labels
    extra = [a.format(tmp=tmp) for a in extra]
    assert main(args + extra + ["--table", str(tmp / "ok.md")] * ("--table" not in extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("shc-eval: error: ") and message.format(tmp=tmp) in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "ok.md").exists()


def test_no_codes_at_all_is_one_line(methods, capsys):
    tmp, args, _, _ = methods
    assert main(args[8:]) == 2
    assert "give the codes: --query-codes FILE and --db-codes FILE, or --codes" in capsys.readouterr().err
