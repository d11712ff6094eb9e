"""bench/itq_codes.py, the round trip of docs/compare.md with codes made outside shc: PCA + ITQ, and codes written
in a run's query and database order (codes/query_index.npy, codes/db_index.npy)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("itq_codes", Path(__file__).parents[1] / "bench" / "itq_codes.py")
itq_codes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(itq_codes)


def test_pca_itq_projection_and_monotone_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) + 5.0
    mean, projection, losses = itq_codes.pca_itq(x, 4, iterations=30)
    assert mean == pytest.approx(x.mean(axis=0))
    # orthonormal columns spanning the top-4 principal subspace (numpy's SVD of the centred data)
    assert projection.T @ projection == pytest.approx(np.eye(4), abs=1e-10)
    top = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)[2][:4].T
    assert projection @ projection.T == pytest.approx(top @ top.T, abs=1e-8)
    # alternating minimisation: the quantisation loss never increases
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0]
    codes = itq_codes.encode(x, mean, projection)
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    with pytest.raises(ValueError, match="bits must be between"):
        itq_codes.pca_itq(x, 13)


def fake_run(tmp_path, query_rows, db_rows, bits=6):
    (tmp_path / "codes").mkdir(parents=True)
    (tmp_path / "metrics.json").write_text(json.dumps({"bits": bits}))
    np.save(tmp_path / "codes" / "query_index.npy", np.asarray(query_rows))
    np.save(tmp_path / "codes" / "db_index.npy", np.asarray(db_rows))
    return tmp_path


def test_codes_follow_the_runs_row_order(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (80, 5, 5), dtype=np.uint8)
    query_rows, db_rows = rng.permutation(80)[:10], rng.permutation(80)[10:]
    got = itq_codes.itq_for_run(fake_run(tmp_path / "a", query_rows, db_rows), pixels, tmp_path / "out-a")
    flat = pixels.reshape(80, -1) / 255.0
    mean, projection, _ = itq_codes.pca_itq(flat[db_rows], 6)
    assert np.array_equal(np.load(got["query"]), itq_codes.encode(flat[query_rows], mean, projection))
    assert np.array_equal(np.load(got["db"]), itq_codes.encode(flat[db_rows], mean, projection))
    assert got["bits"] == 6 and np.load(got["query"]).shape == (10, 6)
    # the same items in another query order: the same codes, reordered
    order = rng.permutation(10)
    again = itq_codes.itq_for_run(fake_run(tmp_path / "b", query_rows[order], db_rows), pixels, tmp_path / "out-b")
    assert np.array_equal(np.load(again["query"]), np.load(got["query"])[order])


def test_a_run_without_index_files_is_one_line(tmp_path, capsys):
    (tmp_path / "run" / "codes").mkdir(parents=True)
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"bits": 8}))
    with pytest.raises(ValueError, match="query_index.npy.*records its query and database rows there"):
        itq_codes.split_rows(tmp_path / "run")
