"""Code and label forms, file loading, and clear errors for bad input (API: ValueError/TypeError)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.io

from shc.codes import MAX_THREADS, pack_codes, prepare_labels, unpack_codes
from shc.io import load_array
from shc.metrics import evaluate, parse_topk, search


@pytest.fixture
def bits():
    return np.random.default_rng(0).random((9, 70)) < 0.5


@pytest.mark.parametrize("form", ["bool", "pm1_int8", "pm1_float64", "01_uint8", "01_int64", "01_float32", "real",
                                  "real_with_zero"])
def test_all_code_forms_pack_to_the_same_words(bits, form):
    arr = {
        "bool": bits,
        "pm1_int8": np.where(bits, 1, -1).astype(np.int8),
        "pm1_float64": np.where(bits, 1.0, -1.0),
        "01_uint8": bits.astype(np.uint8),
        "01_int64": bits.astype(np.int64),
        "01_float32": bits.astype(np.float32),
        "real": np.where(bits, 0.7, -0.2).astype(np.float32),
        "real_with_zero": np.where(bits, 0.0, -3.0),  # sign(0) = +1
    }[form]
    packed, q = pack_codes(arr)
    assert q == 70 and packed.shape == (9, 2) and packed.dtype == np.uint64
    np.testing.assert_array_equal(unpack_codes(packed, 70), bits)


def test_values_in_unit_interval_that_are_not_all_0_or_1_are_signs():
    probabilities = np.random.default_rng(1).random((5, 16))  # sigmoid-like outputs: every sign is +1
    probabilities[0, 0] = 0.0
    np.testing.assert_array_equal(unpack_codes(*pack_codes(probabilities)), np.ones((5, 16), bool))
    np.testing.assert_array_equal(unpack_codes(*pack_codes(np.full((2, 3), 2.0))), np.ones((2, 3), bool))


def test_integer_codes_of_minus_one_zero_and_one_are_signs_with_zero_as_plus_one():
    codes = np.array([[-1, 0, 1, 1], [1, -1, 0, -1]], dtype=np.int8)
    np.testing.assert_array_equal(unpack_codes(*pack_codes(codes)), codes >= 0)


@pytest.mark.parametrize("codes, match", [
    (np.packbits(np.eye(16, dtype=bool), axis=1), r"uint8 values from 0 to 128 .*packbits.*bits=N"),  # no bits
    (np.array([[0, 1, 2], [2, 1, 0]]), "int64 values from 0 to 2 are not binary codes"),
    (np.array([[-3, 1], [2, -1]], dtype=np.int16), "int16 values from -3 to 2 .*floating-point"),
    (np.array([[0, 7]], dtype=np.uint64), "uint64 values from 0 to 7"),
])
def test_integer_codes_that_are_no_binary_code_are_refused(codes, match):
    """By sign every such value would silently be a +1 bit (np.packbits bytes read as 8x too few bits)."""
    with pytest.raises(ValueError, match=match):
        pack_codes(codes, what="database codes")
    with pytest.raises(ValueError, match=f"query codes: {match}"):
        search(codes, codes, 1)


@pytest.mark.parametrize("rows, cols", [(10_000, 64), (700, 1000), (3, 300_000)])
def test_packing_in_chunks_matches_packbits(rows, cols):
    """Packing goes by row chunks of about 256K values: across many chunks, and with rows longer than a chunk."""
    signs = np.random.default_rng(rows).random((rows, cols)) < 0.5
    for codes in (signs, np.where(signs, 1, -1).astype(np.int8), np.where(signs, 0.5, -0.5)):
        packed, q = pack_codes(codes)
        assert q == cols
        np.testing.assert_array_equal(unpack_codes(packed, q), signs)


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "int16", "int32", "int64", "float32", "float64",
                                   ">i4", ">f8", "float16", "uint16", "uint64"])
@pytest.mark.parametrize("cols", [1, 8, 63, 64, 65, 200])
def test_pack_rows_engine_and_numpy_agree_with_packbits(dtype, cols):
    """The engine's packer (native bool/uint8/int/float dtypes) and the numpy one (everything else: other byte
    orders, float16, wider unsigned) give np.packbits' bits, for both rules and both bit orders."""
    from shc.codes import _pack_rows_numpy, pack_rows
    rng = np.random.default_rng(cols)
    values = (rng.integers(-3, 4, (37, cols)) if dtype != "bool" else rng.random((37, cols)) < 0.5)
    values = np.abs(values) if dtype.startswith("uint") else values
    arr = values.astype(dtype)
    for nonzero in (True, False):
        ones = (arr != 0) if nonzero else (arr >= 0)
        for msb_first in (True, False):
            packed = np.packbits(ones, axis=1, bitorder="big" if msb_first else "little")
            want = np.zeros((37, (cols + 63) // 64 * 8), np.uint8)
            want[:, :packed.shape[1]] = packed
            for got in (pack_rows(arr, nonzero, msb_first), _pack_rows_numpy(arr, nonzero, msb_first),
                        pack_rows(np.asfortranarray(arr), nonzero, msb_first)):
                assert got.dtype == np.uint64 and got.shape == (37, (cols + 63) // 64)
                np.testing.assert_array_equal(got.view(np.uint8), want)


def test_packbits_input_and_padding_check(bits):
    packed, q = pack_codes(np.packbits(bits, axis=1), bits=70)
    np.testing.assert_array_equal(unpack_codes(packed, q), bits)
    bad = np.packbits(bits, axis=1)
    bad[0, -1] |= 1  # a bit beyond 70
    with pytest.raises(ValueError, match="beyond bits=70"):
        pack_codes(bad, bits=70)


def test_torch_tensor_codes_without_importing_torch_here(bits):
    torch = pytest.importorskip("torch")
    packed, _ = pack_codes(torch.from_numpy(np.where(bits, 1.0, -1.0)).requires_grad_())
    np.testing.assert_array_equal(unpack_codes(packed, 70), bits)


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones(5), ValueError, "2-D"),
    (np.ones((2, 3, 4)), ValueError, "2-D"),
    (np.ones((0, 8)), ValueError, "empty"),
    (np.ones((3, 0)), ValueError, "empty"),
    (np.array([[1.0, np.nan]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
    (np.array([[1, None]], dtype=object), TypeError, "object"),
    (np.array([["a", "b"]]), TypeError, "dtype"),
    (np.ones((2, 2), dtype=complex), TypeError, "dtype"),
])
def test_bad_codes(bad, exc, match):
    with pytest.raises(exc, match=match):
        pack_codes(bad)


def test_bit_length_mismatches():
    with pytest.raises(ValueError, match="bit-length mismatch"):
        pack_codes(np.ones((2, 16)), bits=12)
    with pytest.raises(ValueError, match="bit-length mismatch"):
        evaluate(np.ones((2, 16)), np.ones((3, 12)), [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="bit-length mismatch"):
        search(np.ones((2, 16)), np.ones((3, 12)), 1)


def test_label_forms_agree():
    rng = np.random.default_rng(1)
    qc, dc = rng.choice([-1, 1], (6, 16)), rng.choice([-1, 1], (40, 16))
    qi, di = rng.integers(0, 4, 6), rng.integers(0, 4, 40)
    eye = np.eye(4, dtype=np.float32)
    ids = evaluate(qc, dc, qi, di).mAP
    assert evaluate(qc, dc, eye[qi], eye[di]).mAP == ids          # one-hot
    assert evaluate(qc, dc, qi, eye[di]).mAP == ids               # mixed ids / one-hot
    assert evaluate(qc, dc, eye[qi].astype(bool), eye[di].astype(bool)).mAP == ids
    assert evaluate(qc, dc, qi + 3_000_000_000, di + 3_000_000_000).mAP == ids  # ids beyond int32
    kinds = prepare_labels(eye[qi], eye[di], 6, 40)
    assert kinds["query_ids"] is not None and kinds["query_bitmaps"] is None


def test_multi_hot_wide_labels_and_empty_rows():
    rng = np.random.default_rng(2)
    ql, dl = rng.random((5, 150)) < 0.03, rng.random((30, 150)) < 0.03
    ql[0] = False  # a query relevant to nothing
    kinds = prepare_labels(ql, dl, 5, 30)
    assert kinds["query_bitmaps"].shape == (5, 3)
    report = evaluate(rng.choice([-1, 1], (5, 8)), rng.choice([-1, 1], (30, 8)), ql, dl)
    assert report.queries_without_relevant >= 1
    assert report.ap[0].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("ql, dl, exc, match", [
    ([0, 1], [0, 1, 2], ValueError, "query labels: 2 class ids but 3 query codes"),
    (np.ones((2, 3)), [0, 1, 2], ValueError, "query labels: 2 rows but 3 query codes"),
    ([[0, 1]], [0, 1, 2], ValueError, "query labels: 2 class ids but 3 query codes"),  # a 1 x 2 row vector
    ([0, 1, -1], [0, 1, 2], ValueError, "negative class id"),
    ([0, 1, 0.5], [0, 1, 2], ValueError, "integers"),
    ([0, 1, np.nan], [0, 1, 2], ValueError, "NaN"),
    (np.ones((3, 2, 2)), [0, 1, 2], ValueError, "1-D class ids or a 2-D"),
    (np.full((3, 2), 2), np.ones((3, 2)), ValueError, "only 0/1"),
    (np.ones((3, 2)), np.ones((3, 5)), ValueError, "columns"),
    (np.array([1, None, 2], dtype=object), [0, 1, 2], TypeError, "object"),
])
def test_bad_labels(ql, dl, exc, match):
    with pytest.raises(exc, match=match):
        evaluate(np.ones((3, 4)), np.ones((3, 4)), ql, dl)


@pytest.mark.parametrize("topk, match", [(0, "positive"), (-5, "positive"), ("ten", "positive integers"),
                                         (2.5, "positive integers"), ([], "empty"), ([True], "positive integers")])
def test_bad_topk(topk, match):
    with pytest.raises(ValueError, match=match):
        evaluate(np.ones((3, 4)), np.ones((3, 4)), [0, 1, 2], [0, 1, 2], topk=topk)


def test_topk_keys_are_the_values_as_given_and_k_beyond_n_is_n():
    assert parse_topk(["100", "all", 7, np.int64(8), 7, "7"]) == [("100", 100), ("all", None), (7, 7), (8, 8)]
    rng = np.random.default_rng(3)
    qc, dc = rng.choice([-1, 1], (4, 8)), rng.choice([-1, 1], (10, 8))
    ql, dl = [0, 1, 0, 1], rng.integers(0, 2, 10)
    r = evaluate(qc, dc, ql, dl, topk=["10", "13", "all"])
    assert list(r.mAP) == ["10", "13", "all"]
    assert r.mAP["10"] == r.mAP["13"] == r.mAP["all"]
    by_int = evaluate(qc, dc, ql, dl, topk=(10, 13, "all"))
    for family in ("mAP", "precision_at_k", "recall_at_k"):
        assert list(getattr(by_int, family)) == [10, 13, "all"]
        assert list(getattr(by_int, family).values()) == list(getattr(r, family).values())
    assert by_int.to_dict() == {**r.to_dict(), "seconds": by_int.seconds}  # the JSON has string keys either way
    assert by_int.per_query_ap(13).tolist() == by_int.ap[:, 1].tolist()
    with pytest.raises(KeyError, match="cut-offs"):
        by_int.per_query_ap(5)


def test_str_of_a_report_is_its_summary():
    rng = np.random.default_rng(4)
    report = evaluate(rng.choice([-1, 1], (4, 8)), rng.choice([-1, 1], (10, 8)), [0, 1, 0, 1],
                      rng.integers(0, 2, 10), topk=(5, "all"))
    assert str(report) == report.summary()
    lines = report.summary().splitlines()
    assert lines[2].split() == ["5", f"{report.mAP[5]:.4f}", f"{report.precision_at_k[5]:.4f}",
                                f"{report.recall_at_k[5]:.4f}"]
    assert lines[3].split()[0] == "all"


@pytest.mark.parametrize("kwargs, match", [({"ties": "random"}, "unknown ties"), ({"threads": 0}, "threads"),
                                           ({"radius": -1}, "radius"), ({"pr_ranks": [0, 3]}, "pr_ranks"),
                                           ({"bits": 0}, "bits")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(np.ones((3, 4)), np.ones((3, 4)), [0, 1, 2], [0, 1, 2], **kwargs)


@pytest.mark.parametrize("threads", [0, -1, MAX_THREADS + 1, 100_000, 2.0, True])
def test_thread_counts_beyond_1_to_max_are_refused_by_every_entry_point(threads):
    """OpenMP cannot create 100000 threads and the process would die (segfault); every engine call checks."""
    from shc.metrics import buckets, report_from_buckets
    codes, labels = np.ones((3, 4)), [0, 1, 2]
    n, r = buckets(codes, codes, labels, labels)
    for call in (lambda: evaluate(codes, codes, labels, labels, threads=threads),
                 lambda: search(codes, codes, 1, threads=threads),
                 lambda: buckets(codes, codes, labels, labels, threads=threads),
                 lambda: report_from_buckets(n, r, ties="expected", threads=threads)):
        with pytest.raises(ValueError, match=f"threads must be an integer from 1 to {MAX_THREADS}"):
            call()


def test_a_huge_omp_num_threads_is_an_error_not_a_crash():
    code = ("import numpy as np, shc\n"
            "try: shc.search(np.ones((2, 8)), np.ones((3, 8)), 2)\n"
            "except ValueError as exc: print(exc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "100000"})
    assert proc.returncode == 0 and f"OMP_NUM_THREADS=100000 asks for more than {MAX_THREADS} threads" in proc.stdout


def test_bad_search_k():
    for k in (0, -1, "3", 2.0):
        with pytest.raises(ValueError, match="k must be"):
            search(np.ones((3, 4)), np.ones((3, 4)), k)


# ------------------------------------------------------------------------------------------------- files

def test_load_array_formats(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", codes=a, labels=np.arange(3))
    np.savez(tmp_path / "one.npz", only=a)
    scipy.io.savemat(tmp_path / "a.mat", {"B": a, "L": np.arange(3)})
    np.savetxt(tmp_path / "a.txt", a)
    np.savetxt(tmp_path / "a.csv", a, delimiter=",")
    for spec in ("a.npy", "a.npz:codes", "one.npz", "a.mat:B", "a.txt", "a.csv"):
        np.testing.assert_array_equal(load_array(str(tmp_path / spec)), a, err_msg=spec)
    np.testing.assert_array_equal(load_array(str(tmp_path / "a.npz:labels")), np.arange(3))


@pytest.mark.parametrize("order", ["C", "F"])
def test_load_array_mmap_maps_npy_read_only(tmp_path, order):
    a = np.asarray(np.arange(12, dtype=np.int8).reshape(3, 4), order=order)
    np.save(tmp_path / "a.npy", a)
    mapped = load_array(str(tmp_path / "a.npy"), mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, a)
    np.savez(tmp_path / "a.npz", codes=a)  # other formats are read as usual
    np.testing.assert_array_equal(load_array(str(tmp_path / "a.npz:codes"), mmap=True), a)
    whole = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:-5])  # a truncated file: an error in both modes, never garbage
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for mmap in (False, True):
        with pytest.raises(ValueError, match="cut.npy"):
            load_array(str(tmp_path / "cut.npy"), mmap=mmap)
        with pytest.raises(ValueError, match="object/pickled"):
            load_array(str(tmp_path / "obj.npy"), mmap=mmap)


def test_load_array_mmap_falls_back_to_reading_where_mapping_fails(tmp_path, monkeypatch):
    a = np.arange(6, dtype=np.int8).reshape(2, 3)
    np.save(tmp_path / "a.npy", a)
    real_load = np.load

    def no_mmap(*args, mmap_mode=None, **kwargs):  # a file system without mmap support
        if mmap_mode is not None:
            raise OSError(19, "No such device")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", no_mmap)
    got = load_array(str(tmp_path / "a.npy"), mmap=True)
    assert not isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, a)


def test_load_array_torch(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.arange(6.0).reshape(2, 3)
    torch.save(t, tmp_path / "t.pt")
    torch.save({"codes": t}, tmp_path / "d.pt")
    np.testing.assert_array_equal(load_array(str(tmp_path / "t.pt")), t.numpy())
    np.testing.assert_array_equal(load_array(str(tmp_path / "d.pt:codes")), t.numpy())


def test_load_array_errors(tmp_path):
    np.savez(tmp_path / "two.npz", x=np.ones(2), y=np.ones(2))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "bad.csv").write_text("1,2\nx,y\n")
    (tmp_path / "a.xyz").write_text("1")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_array(str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="holds 2 arrays"):
        load_array(str(tmp_path / "two.npz"))
    with pytest.raises(ValueError, match="no array named 'z'"):
        load_array(str(tmp_path / "two.npz:z"))
    with pytest.raises(ValueError, match="object/pickled"):
        load_array(str(tmp_path / "obj.npy"))
    with pytest.raises(ValueError, match="not a numeric table"):
        load_array(str(tmp_path / "bad.csv"))
    with pytest.raises(ValueError, match="unsupported file type"):
        load_array(str(tmp_path / "a.xyz"))


def test_load_array_tells_what_is_wrong_with_the_file(tmp_path):
    (tmp_path / "garbage.npy").write_bytes(b"this is not numpy\n")
    (tmp_path / "garbage.npz").write_bytes(b"nor is this\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("\n# only a comment\n")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_array(str(tmp_path))
    with pytest.raises(ValueError, match="garbage.npy: not a .npy file"):
        load_array(str(tmp_path / "garbage.npy"))
    with pytest.raises(ValueError, match="garbage.npz: not a .npz"):
        load_array(str(tmp_path / "garbage.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not show
        for name, match in (("empty.txt", "the file is empty"), ("empty.npy", "the file is empty"),
                            ("blank.txt", "holds no numbers")):
            with pytest.raises(ValueError, match=f"{name}: {match}"):
                load_array(str(tmp_path / name))


@pytest.mark.parametrize("oned_as", ["row", "column"])
def test_mat_label_vectors_are_class_ids(tmp_path, oned_as):
    """scipy.io.savemat (and MATLAB) store a vector as 1 x N or N x 1: both read as the class ids they hold, also
    a 0/1 column (binary class ids, not a one-label multi-hot matrix) and the 1 x 1 label of a single query."""
    rng = np.random.default_rng(4)
    qc, dc = rng.choice([-1, 1], (7, 16)), rng.choice([-1, 1], (50, 16))
    for classes in (5, 2):
        ql, dl = rng.integers(0, classes, 7), rng.integers(0, classes, 50)
        scipy.io.savemat(tmp_path / "l.mat", {"ql": ql, "dl": dl}, oned_as=oned_as)
        mql, mdl = load_array(str(tmp_path / "l.mat:ql")), load_array(str(tmp_path / "l.mat:dl"))
        assert mql.shape == ((1, 7) if oned_as == "row" else (7, 1))
        assert evaluate(qc, dc, mql, mdl).mAP == evaluate(qc, dc, ql, dl).mAP
        assert evaluate(qc, dc, mql, np.eye(classes)[dl]).mAP == evaluate(qc, dc, ql, dl).mAP
    assert evaluate(qc[:1], dc, [[1]], dl).mAP == evaluate(qc[:1], dc, [1], dl).mAP
    one_label = prepare_labels(ql[:, None] == 1, dl[:, None] == 1, 7, 50)  # bool: a one-label matrix stays one
    assert one_label["query_bitmaps"] is not None


def test_import_shc_evaluate_does_not_import_torch():
    code = "import shc, sys; shc.evaluate; shc.search; import shc.cli.eval; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
