"""shc-centers: files written, JSON contents, and one-line errors with exit code 2."""
import json

import numpy as np
import pytest

from shc.centers import gv_distance, semantic_loss
from shc.cli.centers import main


def hierarchy_similarity(classes=20, group=4):
    sup = np.arange(classes) // group
    s = np.where(sup[:, None] == sup[None, :], 0.5, -0.2)
    np.fill_diagonal(s, 1.0)
    return s


@pytest.mark.parametrize("method", ["csq", "mds", "shc"])
def test_cli_writes_centers_and_report(tmp_path, method):
    s = hierarchy_similarity()
    np.save(tmp_path / "S.npy", s)
    out, rep = tmp_path / "c.npy", tmp_path / "sub" / "r.json"
    args = ["--classes", "20", "--bits", "16", "--method", method, "--out", str(out), "--json", str(rep), "--quiet"]
    if method == "shc":
        args += ["--similarity", str(tmp_path / "S.npy")]
    assert main(args) == 0
    h = np.load(out)
    assert h.dtype == np.int8 and h.shape == (20, 16) and set(np.unique(h)) == {-1, 1}
    r = json.loads(rep.read_text())
    dist = (16 - h.astype(int) @ h.T.astype(int)) // 2
    upper = dist[np.triu_indices(20, 1)]
    assert r["method"] == method and r["classes"] == 20 and r["bits"] == 16
    assert r["d_required"] == gv_distance(16, 20)
    assert (r["min_distance"], r["max_distance"]) == (upper.min(), upper.max())
    assert r["mean_distance"] == pytest.approx(upper.mean())
    assert r["min_distance"] >= r["d_required"] and r["seconds"] >= 0
    if method == "shc":
        assert r["semantic_loss"] == pytest.approx(semantic_loss(s, h))
    else:
        assert "semantic_loss" not in r


@pytest.mark.parametrize("suffix", [".csv", ".pt"])
def test_cli_reads_similarity_formats_and_infers_classes(tmp_path, suffix):
    s = hierarchy_similarity()
    path = tmp_path / f"S{suffix}"
    if suffix == ".csv":
        np.savetxt(path, s, delimiter=",")
    else:
        torch = pytest.importorskip("torch")
        torch.save(torch.from_numpy(s), path)
    out = tmp_path / "c.npy"
    assert main(["--bits", "16", "--similarity", str(path), "--out", str(out), "--quiet"]) == 0
    np.save(tmp_path / "S.npy", s)
    assert main(["--bits", "16", "--similarity", str(tmp_path / "S.npy"), "--out", str(tmp_path / "d.npy"),
                 "--quiet"]) == 0
    assert np.array_equal(np.load(out), np.load(tmp_path / "d.npy"))


def _bad(tmp_path, capsys, args, match):
    assert main(args + ["--out", str(tmp_path / "c.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shc-centers: error:") and match in err and "\n" not in err
    assert not (tmp_path / "c.npy").exists()


def test_cli_errors(tmp_path, capsys):
    nan = hierarchy_similarity()
    nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "rect.npy", np.ones((20, 19)))
    np.save(tmp_path / "S.npy", hierarchy_similarity())
    _bad(tmp_path, capsys, ["--classes", "20", "--bits", "16", "--method", "shc"], "needs --similarity")
    _bad(tmp_path, capsys, ["--bits", "16", "--similarity", str(tmp_path / "nan.npy")], "non-finite")
    _bad(tmp_path, capsys, ["--bits", "16", "--similarity", str(tmp_path / "rect.npy")], "square")
    _bad(tmp_path, capsys, ["--classes", "10", "--bits", "16", "--similarity", str(tmp_path / "S.npy")],
         "10 classes were requested")
    _bad(tmp_path, capsys, ["--bits", "16", "--similarity", str(tmp_path / "missing.npy")], "no such file")
    _bad(tmp_path, capsys, ["--classes", "300", "--bits", "8", "--method", "mds"], "cannot get distinct centers")
    _bad(tmp_path, capsys, ["--classes", "20", "--bits", "0", "--method", "csq"], "bits must be >= 1")
    _bad(tmp_path, capsys, ["--bits", "16", "--method", "mds"], "--classes is required")


def test_cli_usage_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--classes", "10", "--bits", "16", "--method", "dpsh", "--out", str(tmp_path / "c.npy")])
    assert exc.value.code == 2
