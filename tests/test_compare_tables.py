"""shc.report_tables and the method figures: the comparison table's cells and renderers, the paired statistics
against hand-computed and enumerated references, the seed's colours."""
import csv
import io
import itertools
import math

import numpy as np
import pytest

from shc.report_tables import (SEED_METHODS, check_table_path, csv_table, gains_over_others, latex_table,
                               markdown_table, method_order, paired_differences, render_table, t_interval,
                               table_cells, wilcoxon_across_queries)

T975 = {1: 12.706204736174698, 2: 4.302652729749464}  # Student-t 97.5 % quantiles (tables)


def run(method, bits, seed, value, expected=None, cutoffs=("100", "1000", "all")):
    expected = value - 0.01 if expected is None else expected
    return {"method": method, "bits": bits, "seed": seed,
            "mAP": {k: value - 0.1 * i for i, k in enumerate(cutoffs)},
            "mAP_expected": {k: expected - 0.1 * i for i, k in enumerate(cutoffs)}}


def test_method_order_is_the_seeds_then_first_appearance():
    assert method_order(["itq", "csq", "SHC", "shc-paper", "idhn", "csq", "mds"]) == \
        ["SHC", "mds", "csq", "idhn", "itq", "shc-paper"]
    assert method_order(reversed(SEED_METHODS)) == list(SEED_METHODS)


def test_t_interval_against_tabulated_quantiles():
    values = [0.01, 0.03, 0.08]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = T975[2] * sd / math.sqrt(3)
    assert t_interval(values) == pytest.approx([mean - half, mean + half], abs=1e-12)
    assert t_interval([0.1, 0.2]) == pytest.approx([0.15 - T975[1] * 0.05, 0.15 + T975[1] * 0.05], abs=1e-12)
    assert t_interval([0.1]) is None


def test_paired_gains_by_seed_with_intervals():
    runs = [run("shc", 16, s, v) for s, v in enumerate([0.80, 0.82, 0.85])] + \
           [run("csq", 16, s, v) for s, v in enumerate([0.79, 0.80, 0.80])] + \
           [run("itq", 16, 0, 0.5), run("mds", 32, 0, 0.3)]  # itq: one seed; mds: no shc at 32 bits
    rows = gains_over_others(runs, "shc")
    assert [(r["baseline"], r["bits"], r["seeds"]) for r in rows] == [("csq", 16, [0, 1, 2]), ("itq", 16, [0])]
    diffs = [0.01, 0.02, 0.05]
    stat = rows[0]["mAP"]["all"]
    assert stat["mean"] == pytest.approx(np.mean(diffs)) and stat["std"] == pytest.approx(np.std(diffs, ddof=1))
    half = T975[2] * np.std(diffs, ddof=1) / math.sqrt(3)
    assert stat["ci95"] == pytest.approx([np.mean(diffs) - half, np.mean(diffs) + half])
    assert (stat["wins"], stat["losses"]) == (3, 0)
    assert rows[1]["mAP"]["100"]["ci95"] is None and rows[1]["mAP"]["100"]["mean"] == pytest.approx(0.3)
    assert gains_over_others(runs, "no-such-label") == []
    assert paired_differences(runs, "shc", "mds") == []


def exact_wilcoxon_p(diff):
    """Two-sided exact p of the signed-rank test by enumerating every sign assignment (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(diff))) + 1
    w = ranks[diff > 0].sum()
    dist = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(diff))]
    dist = np.array(dist)
    return min(1.0, 2 * min((dist <= w).mean(), (dist >= w).mean()))


def test_wilcoxon_pairs_queries_within_seeds_and_matches_enumeration():
    rng = np.random.default_rng(0)
    ours = {s: rng.random(6) for s in (0, 1)}
    theirs = {s: ours[s] - rng.normal(0.05, 0.1, 6) for s in (0, 1)}
    per_query = {("shc", 16, s): {"all": ours[s]} for s in (0, 1)}
    per_query.update({("csq", 16, s): {"all": theirs[s]} for s in (0, 1)})
    per_query[("csq", 16, 5)] = {"all": rng.random(6)}  # no shc partner for seed 5: not used
    [row] = wilcoxon_across_queries(per_query, "shc")
    diff = np.concatenate([ours[0] - theirs[0], ours[1] - theirs[1]])
    assert row["seeds"] == [0, 1] and row["n_pairs"] == 12 and row["n_nonzero"] == 12
    assert row["mean_difference"] == pytest.approx(diff.mean()) and row["median_difference"] == pytest.approx(
        np.median(diff))
    assert row["p_value"] == pytest.approx(exact_wilcoxon_p(diff), rel=1e-12)


def test_wilcoxon_identical_runs_and_mismatched_queries():
    same = {("shc", 8, 0): {"100": np.ones(4)}, ("mds", 8, 0): {"100": np.ones(4)}}
    [row] = wilcoxon_across_queries(same)
    assert row["p_value"] is None and row["statistic"] is None and row["n_nonzero"] == 0
    with pytest.raises(ValueError, match="different numbers of queries"):
        wilcoxon_across_queries({("shc", 8, 0): {"100": np.ones(4)}, ("mds", 8, 0): {"100": np.ones(3)}})


def test_table_cells_mean_std_best_and_cutoffs():
    # binary-exact values: csq's mean 0.75 equals shc's exactly, so both are best (every equal mean is bold)
    runs = [run("csq", 16, 0, 0.875, expected=0.9), run("csq", 16, 1, 0.625, expected=0.9),
            run("shc", 16, 0, 0.75), run("shc", 16, 1, 0.75), run("itq", 16, 0, 0.5), run("shc", 32, 0, 0.5)]
    cells = table_cells(runs, cutoffs=("all", 100))
    assert [(c["ties"], c["method"], c["bits"], c["cutoff"]) for c in cells[:6]] == [
        ("index", "shc", 16, "all"), ("index", "shc", 16, "100"), ("index", "shc", 32, "all"),
        ("index", "shc", 32, "100"), ("index", "csq", 16, "all"), ("index", "csq", 16, "100")]
    at = {(c["ties"], c["method"], c["bits"], c["cutoff"]): c for c in cells}
    csq = at[("index", "csq", 16, "100")]
    assert csq["mean"] == 0.75 and csq["std"] == pytest.approx(math.sqrt(2 * 0.125 ** 2)) and csq["n"] == 2
    assert csq["best"] and at[("index", "shc", 16, "100")]["best"] and not at[("index", "itq", 16, "100")]["best"]
    assert at[("tie-aware", "csq", 16, "100")]["best"] and not at[("tie-aware", "shc", 16, "100")]["best"]
    assert at[("index", "shc", 32, "100")]["best"]  # alone at 32 bits
    assert at[("index", "itq", 16, "all")]["std"] is None
    assert ("index", "csq", 32, "100") not in at  # no run there: no cell
    assert len(table_cells(runs, cutoffs=(100,))) == 2 * 4
    with pytest.raises(ValueError, match="has no mAP@5000"):
        table_cells(runs, cutoffs=(5000,))
    coco = table_cells([run("shc", 16, 0, 0.6, cutoffs=("5000",))])
    assert [c["cutoff"] for c in coco] == ["5000", "5000"]


TINY = [run("shc", 16, 0, 0.5, cutoffs=("all",)), run("shc", 16, 1, 0.7, cutoffs=("all",)),
        run("my_itq", 16, 0, 0.4, expected=0.7, cutoffs=("all",)), run("shc", 32, 0, 0.8, cutoffs=("all",))]


def test_markdown_renderer():
    assert markdown_table(table_cells(TINY)) == "\n".join([
        "**index ties**", "",
        "| method | 16 bits mAP@all | 32 bits mAP@all |", "|---|---|---|",
        "| shc | **0.6000 ± 0.1414** | **0.8000** |",
        "| my_itq | 0.4000 | – |", "",
        "**tie-aware ties**", "",
        "| method | 16 bits mAP@all | 32 bits mAP@all |", "|---|---|---|",
        "| shc | 0.5900 ± 0.1414 | **0.7900** |",
        "| my_itq | **0.7000** | – |", ""])


def test_latex_renderer_is_booktabs_with_escaped_labels():
    tex = latex_table(table_cells(TINY))
    index_table = tex.split("\n\n")[0].splitlines()
    assert index_table == [
        r"% mAP, index ties; mean $\pm$ sample std over seeds; best per column in bold",
        r"\begin{tabular}{lcc}", r"\toprule",
        r"Method & \multicolumn{1}{c}{16 bits} & \multicolumn{1}{c}{32 bits} \\",
        r"\cmidrule(lr){2-2} \cmidrule(lr){3-3}",
        r" & @all & @all \\", r"\midrule",
        r"shc & \textbf{0.6000 $\pm$ 0.1414} & \textbf{0.8000} \\",
        r"my\_itq & 0.4000 & -- \\", r"\bottomrule", r"\end{tabular}"]
    assert tex.count(r"\begin{tabular}") == 2
    assert latex_table([]) == markdown_table([]) == ""


def test_csv_renderer_is_tidy_and_exact():
    rows = list(csv.DictReader(io.StringIO(csv_table(table_cells(TINY)))))
    assert len(rows) == 6 and list(rows[0]) == ["ties", "method", "bits", "cutoff", "mean", "std", "n", "best"]
    first = rows[0]
    assert (first["ties"], first["method"], first["bits"], first["cutoff"], first["n"], first["best"]) == \
        ("index", "shc", "16", "all", "2", "1")
    assert float(first["mean"]) == np.mean([0.5, 0.7]) and float(first["std"]) == np.std([0.5, 0.7], ddof=1)
    assert rows[2]["method"] == "my_itq" and rows[2]["std"] == ""


def test_table_suffix_picks_the_renderer_or_refuses():
    cells = table_cells(TINY)
    assert render_table(cells, "t.MD") == markdown_table(cells) and render_table(cells, "x/t.tex") == latex_table(cells)
    for bad in ("t.xlsx", "table"):
        with pytest.raises(ValueError, match=r"cannot write a table as .* give a file ending in .md, .csv, .tex"):
            check_table_path(bad, "--table")


def test_method_styles_seed_colours_then_colour_blind_safe_dashed():
    from shc.plots import OTHER_COLOURS, SEED_COLOURS, method_styles
    styles = method_styles(["SHC", "itq", "mds", "shc-paper", "idhn"])
    assert styles["SHC"] == {"color": "red", "linestyle": "-"} and styles["mds"]["color"] == "green"
    assert styles["idhn"]["color"] == "cyan"
    assert styles["itq"] == {"color": OTHER_COLOURS[0], "linestyle": "--"}
    assert styles["shc-paper"] == {"color": OTHER_COLOURS[1], "linestyle": "--"}
    assert set(SEED_COLOURS) == set(SEED_METHODS)
    many = method_styles([f"m{i}" for i in range(len(OTHER_COLOURS) + 1)])
    assert many[f"m{len(OTHER_COLOURS)}"]["color"] == OTHER_COLOURS[0]  # the palette cycles


def test_figures_are_written_in_the_suffixs_format(tmp_path):
    from shc.plots import method_styles, plot_map_vs_bits, plot_pr_curves
    curves = {"shc": ([1.0, 0.5], [0.1, 1.0]), "itq": ([0.9, 0.4], [0.1, 1.0])}
    plot_pr_curves(curves, tmp_path / "pr.png", "t", styles=method_styles(curves))
    plot_pr_curves(curves, tmp_path / "pr.pdf", "t", styles=method_styles(curves))
    plot_map_vs_bits({"shc": {16: (0.7, 0.01), 32: (0.75, None)}}, tmp_path / "m.pdf")
    assert (tmp_path / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "pr.pdf").read_bytes()[:5] == (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError):
        plot_map_vs_bits({}, tmp_path / "x.png")
