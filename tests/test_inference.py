"""Using a trained run: load_run / shc-encode / shc-search / shc-export against the run's own codes and plain numpy.

One tiny Fashion-MNIST run (csq centers: no stage 1; 16 bits, 1 epoch) serves the module; its query images are
written as PNG files in the dataset's query order, under a class-id directory each (ImageFolder labels).
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from shc.cli.encode import main as encode_main
from shc.cli.export import main as export_main
from shc.cli.search import main as search_main
from shc.data import load_dataset
from shc.data.fashion_mnist import CLASS_NAMES
from shc.train import TrainConfig, run_pipeline

DATA = dict(train_per_class=20, query_per_class=5)
BITS = 16


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run dir, query PNG paths in query order, list file of them with labels, the query split)."""
    root = tmp_path_factory.mktemp("inference")
    out = root / "run"
    run_pipeline(TrainConfig(dataset="fashion-mnist", data_options=DATA, centers="csq", bits=BITS, epochs=1,
                             threads=1, progress=False, out=str(out)))
    query = load_dataset("fashion-mnist", **DATA).query
    paths = []
    for i, (pixels, label) in enumerate(zip(query.images, query.labels)):
        path = root / "queries" / str(label) / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[:, :, 0]).save(path)
        paths.append(str(path))
    list_file = root / "queries.txt"
    list_file.write_text("".join(f"{p}\t{label}\n" for p, label in zip(paths, query.labels)))
    return out, paths, list_file, query


def cli(main, capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def hamming_topk(query_codes, db_codes, k):
    """The numpy reference: Hamming distances of ±1 codes, stable argsort (ties by database index)."""
    distance = (query_codes.shape[1] - query_codes.astype(np.int64) @ db_codes.T.astype(np.int64)) // 2
    order = np.argsort(distance, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distance, order, axis=1)


def test_encode_cli_reproduces_run_codes_bit_for_bit(run, tmp_path, capsys):
    out, paths, list_file, query = run
    saved = np.load(out / "codes" / "query_codes.npy")
    code, stdout, err = cli(encode_main, capsys, "--run", out, "--images", list_file, "--out", tmp_path / "q.npy",
                            "--no-progress", "--workers", 1)
    assert code == 0, err
    codes = np.load(tmp_path / "q.npy")
    assert codes.dtype == np.int8 and np.array_equal(codes, saved)
    meta = json.loads((tmp_path / "q.json").read_text())
    assert meta["paths"] == paths and meta["bits"] == BITS and not meta["packed"]
    assert meta["labels"] == [CLASS_NAMES[x] for x in query.labels]  # class ids in the list -> class names
    code, _, err = cli(encode_main, capsys, "--run", out, "--images", paths[0], paths[1], "--out",
                       tmp_path / "p.npy", "--packed", "--no-progress")
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "p.npy"), np.packbits(saved[:2] > 0, axis=1))


def test_encoder_takes_arrays_tensors_pil_and_paths(run):
    import shc
    out, paths, _, query = run
    saved = np.load(out / "codes" / "query_codes.npy")
    encoder = shc.load_run(out, device="cpu")
    assert encoder.bits == BITS and encoder.backbone == "compact"
    assert np.array_equal(encoder.encode(query.images), saved)                        # (N, H, W, 1) uint8
    assert np.array_equal(encoder.encode(torch.from_numpy(query.images).permute(0, 3, 1, 2)), saved)
    assert np.array_equal(encoder.encode([Image.open(p) for p in paths[:5]]), saved[:5])
    assert np.array_equal(encoder.encode(query.images[0, :, :, 0]), saved[:1])       # one (H, W) image
    assert np.array_equal(encoder.encode(paths, batch_size=7), saved)


def test_search_matches_numpy_reference(run, tmp_path, capsys):
    out, paths, _, query = run
    k = 7
    code, stdout, err = cli(search_main, capsys, "--run", out, "--images", paths[0].rsplit("/", 2)[0],
                            "--topk", k, "--json", tmp_path / "r.json", "--no-progress")
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())
    db_codes = np.load(out / "codes" / "db_codes.npy")
    db_labels = np.load(out / "codes" / "db_labels.npy")
    images = sorted(paths)  # a directory is read recursively, sorted
    order = [paths.index(p) for p in images]
    index, distance = hamming_topk(np.load(out / "codes" / "query_codes.npy")[order], db_codes, k)
    assert [q["image"] for q in results["queries"]] == images
    for q, row, dist, i in zip(results["queries"], index, distance, order):
        assert q["label"] == CLASS_NAMES[query.labels[i]]  # the class-id sub-directory
        assert [r["index"] for r in q["results"]] == row.tolist()
        assert [r["distance"] for r in q["results"]] == dist.tolist()
        assert [r["label"] for r in q["results"]] == [CLASS_NAMES[x] for x in db_labels[row]]
        assert [r["relevant"] for r in q["results"]] == (db_labels[row] == query.labels[i]).tolist()
        assert all(r["path"] is None for r in q["results"])  # an in-memory dataset: index only
    assert len(stdout.splitlines()) == len(paths)


def test_search_a_database_from_shc_encode(run, tmp_path, capsys):
    out, paths, list_file, _ = run
    for packed in ((), ("--packed",)):
        db = tmp_path / f"db{len(packed)}.npy"
        assert cli(encode_main, capsys, "--run", out, "--images", list_file, "--out", db, *packed,
                   "--no-progress")[0] == 0
        code, _, err = cli(search_main, capsys, "--run", out, "--images", *paths[:3], "--db", db, "--topk", 4,
                           "--json", tmp_path / f"r{len(packed)}.json", "--no-progress", "--quiet")
        assert code == 0, err
    plain, packed = (json.loads((tmp_path / f"r{i}.json").read_text()) for i in (0, 1))
    assert plain["queries"] == packed["queries"]
    saved = np.load(out / "codes" / "query_codes.npy")
    index, distance = hamming_topk(saved[:3], saved, 4)
    for q, row, dist in zip(plain["queries"], index, distance):
        assert [r["path"] for r in q["results"]] == [paths[i] for i in row]
        assert [r["distance"] for r in q["results"]] == dist.tolist()
        assert q["results"][0]["distance"] == 0  # each query finds itself (ties: lowest index first)


def test_packed_codes_serve_a_faiss_binary_index(run, tmp_path, capsys):
    """docs/inference.md: shc-encode --packed codes go into faiss.IndexBinaryFlat unchanged."""
    faiss = pytest.importorskip("faiss")
    out, _, list_file, _ = run
    assert cli(encode_main, capsys, "--run", out, "--images", list_file, "--out", tmp_path / "p.npy", "--packed",
               "--no-progress")[0] == 0
    packed = np.load(tmp_path / "p.npy")
    index = faiss.IndexBinaryFlat(BITS)
    index.add(packed)
    distance, _ = index.search(packed[:5], 6)
    saved = np.load(out / "codes" / "query_codes.npy")
    assert np.array_equal(distance, hamming_topk(saved[:5], saved, 6)[1])


def test_gallery_png_and_html(run, tmp_path, capsys):
    out, paths, _, _ = run
    code, _, err = cli(search_main, capsys, "--run", out, "--images", *paths[:2], "--topk", 3, "--html",
                       tmp_path / "g.html", "--png", tmp_path / "g.png", "--no-progress", "--quiet")
    assert code == 0, err
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "g.html").read_text()
    assert page.count('class="query"') == 2 and page.count('class="result"') == 6
    assert "src=\"http" not in page  # self-contained: thumbnails are data URIs


def test_gallery_in_a_headless_browser(run, tmp_path, capsys):
    """The page loads in chromium without console errors and shows K loaded images per query."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip install playwright) is absent")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; scripts/setup.sh installs it)")
    out, _, _, _ = run
    k = 5
    code, _, err = cli(search_main, capsys, "--run", out, "--images", out.parent / "queries", "--topk", k,
                       "--html", tmp_path / "g.html", "--no-progress", "--quiet")
    assert code == 0, err
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "g.html").as_uri())
        per_query = page.evaluate("[...document.querySelectorAll('.query')]"
                                  ".map(q => q.querySelectorAll('.result img').length)")
        loaded = page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        browser.close()
    assert errors == []
    assert per_query == [k] * 50 and loaded


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
def test_export_reproduces_run_codes_on_cpu(run, tmp_path, capsys, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    import shc
    from shc.export import run_exported
    out, paths, _, query = run
    model = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt2")
    code, stdout, err = cli(export_main, capsys, "--run", out, "--format", fmt, "--out", model)
    assert code == 0, err
    assert "codes identical" in stdout
    pixels = shc.load_run(out, device="cpu").pixels(paths)  # from the PNG files
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(paths), 1, 28, 28)
    assert np.array_equal(pixels.numpy(), query.images.transpose(0, 3, 1, 2))
    codes = run_exported(model, fmt, pixels)
    assert codes.dtype == np.int8 and np.array_equal(codes, np.load(out / "codes" / "query_codes.npy"))


def _bad_inputs(root, out, paths):
    """(argv for a command, the message expected) for each kind of bad input."""
    not_a_run = root / "not-a-run"
    not_a_run.mkdir()
    old_run = root / "old-run"
    shutil.copytree(out / "checkpoints", old_run / "checkpoints")
    (old_run / "checkpoints" / "hashnet.json").unlink()
    wide = root / "wide.npy"
    np.save(wide, np.ones((4, 32), np.int8))
    broken = root / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    colour = root / "colour.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(colour)
    q = ["--images", paths[0]]
    foreign = root / "foreign.npy"
    np.save(foreign, np.ones((4, BITS), np.int8))
    (root / "foreign.json").write_text(json.dumps({"bits": BITS, "packed": False, "fingerprint": "0" * 64,
                                                   "run": "elsewhere"}))  # shc-encode's sidecar, another model
    malformed = root / "malformed.npy"
    np.save(malformed, np.ones((4, BITS), np.int8))
    (root / "malformed.json").write_text(json.dumps({"bits": "16", "paths": None}))
    not_a_dict = root / "list.npy"
    np.save(not_a_dict, np.ones((4, BITS), np.int8))
    (root / "list.json").write_text("[1, 2]")
    return [
        (search_main, ["--run", out, *q, "--topk", 100000], "--topk 100000 is beyond the database's 69750 items"),
        (search_main, ["--run", out, *q, "--db", malformed], "malformed.json: 'bits' must be int, got '16'"),
        (search_main, ["--run", out, *q, "--db", not_a_dict], "list.json: expected a JSON object"),
        (encode_main, ["--run", out, *q, "--workers", 100000, "--out", root / "x.npy"],
         "--workers must be an integer from 0 to"),
        (search_main, ["--run", out, *q, "--db", foreign], "was encoded by another model"),
        (encode_main, ["--run", out, "--images", colour, paths[0], "--workers", 1, "--out", root / "x.npy"],
         "colour image (3 channels)"),
        (search_main, ["--run", not_a_run, *q], "not an shc run directory"),
        (search_main, ["--run", root / "missing", *q], "no such run directory"),
        (encode_main, ["--run", old_run, *q, "--out", root / "x.npy"], "hashnet.json is missing"),
        (search_main, ["--run", out, *q, "--db", wide], "holds 32-bit codes but the run's model makes 16-bit"),
        (encode_main, ["--run", out, "--images", broken, "--out", root / "x.npy"], "cannot read image"),
        (encode_main, ["--run", out, "--images", broken, paths[0], "--workers", 1, "--out", root / "x.npy"],
         "cannot read image"),
        (search_main, ["--run", out, "--images", colour], "colour image (3 channels)"),
        (encode_main, ["--run", out, *q, "--out", root / "x.txt"], "written as .npy"),
        (search_main, ["--run", out, "--images", root / "nothing.png"], "no such image, directory or list file"),
        (export_main, ["--run", not_a_run, "--format", "torch", "--out", root / "m.pt2"], "not an shc run"),
        (export_main, ["--run", out, "--format", "torch", "--out", root / "m.txt"], "written as .pt2 (name it m.pt2)"),
        (export_main, ["--run", out, "--format", "onnx", "--out", root / "m.pt2"], "written as .onnx"),
    ]


def test_bad_inputs_exit_2_with_one_line(run, tmp_path, capsys):
    out, paths, _, _ = run
    for main, argv, message in _bad_inputs(tmp_path, out, paths):
        code, _, err = cli(main, capsys, *argv, *(["--no-progress"] if main is not export_main else []))
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)
        assert err.startswith(("shc-search: error:", "shc-encode: error:", "shc-export: error:"))


def test_import_shc_stays_free_of_torch():
    import subprocess
    import sys
    code = "import shc, sys; shc.load_run; assert 'torch' in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
    probe = "import shc, sys; assert 'load_run' in dir(shc) and 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_encode_skips_unreadable_images_when_asked(run, tmp_path, capsys):
    out, paths, _, _ = run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    argv = ["--run", out, "--images", paths[0], broken, paths[1], "--out", tmp_path / "q.npy", "--no-progress"]
    code, stdout, err = cli(encode_main, capsys, *argv, "--skip-unreadable")
    assert code == 0, err
    assert err.strip() == f"skipped 1 of 3 images that cannot be read (first: cannot read image {broken}: " \
                          f"not an image file, or a format PIL cannot read)"
    saved = np.load(out / "codes" / "query_codes.npy")
    assert np.array_equal(np.load(tmp_path / "q.npy"), saved[:2])
    assert json.loads((tmp_path / "q.json").read_text())["paths"] == paths[:2]
    code, _, err = cli(encode_main, capsys, *argv[:3], broken, *argv[6:], "--skip-unreadable")
    assert code == 2 and "none of the 1 images can be read" in err
    code, _, err = cli(encode_main, capsys, *argv[:4], *argv[6:], "--batch-size", 0)
    assert code == 2 and "batch_size must be a positive integer, got 0" in err


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_run_directory_cannot_run_code(run, tmp_path, capsys, monkeypatch):
    """hashnet.json names cifar100 under a folder of pickles that run a shell command when unpickled: neither
    shc-export nor shc-search --png reads a dataset from where a run says, and with --data-root pointing there the
    pickles are refused, never run."""
    import pickle
    out, paths, _, _ = run
    monkeypatch.delenv("SHC_DATA_ROOT", raising=False)
    evil, marker = tmp_path / "evil", tmp_path / "ran"
    (evil / "cifar-100-python").mkdir(parents=True)
    for name in ("train", "test", "meta"):
        with open(evil / "cifar-100-python" / name, "wb") as f:
            pickle.dump({"data": _RunsCode(marker)}, f, protocol=2)
    crafted = tmp_path / "crafted"
    shutil.copytree(out, crafted)
    config = json.loads((crafted / "checkpoints" / "hashnet.json").read_text())
    config["dataset"].update(name="cifar100", data_root=str(evil), options={})
    (crafted / "checkpoints" / "hashnet.json").write_text(json.dumps(config))
    from shc.integrity import file_digest  # whoever crafts the run crafts its manifest too
    manifest = json.loads((crafted / "manifest.json").read_text())
    manifest["files"]["checkpoints/hashnet.json"] = file_digest(crafted / "checkpoints" / "hashnet.json")
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    for main, argv in ((export_main, ["--format", "torch", "--out", tmp_path / "m.pt2"]),
                       (search_main, ["--images", paths[0], "--png", tmp_path / "g.png", "--no-progress"])):
        code, _, err = cli(main, capsys, "--run", crafted, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"pass --data-root DIR (the run was trained on data in {evil}, which is not read" in err
        code, _, err = cli(main, capsys, "--run", crafted, *argv, "--data-root", evil)
        assert code == 2 and "posix.system is not part of the CIFAR format" in err, err
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
def test_export_on_a_full_disk_is_one_line_and_leaves_no_file(run, capsys, small_disk, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    out, _, _, _ = run
    disk = small_disk(64 << 10)
    model = disk / ("m.onnx" if fmt == "onnx" else "m.pt2")
    code, _, err = cli(export_main, capsys, "--run", out, "--format", fmt, "--out", model)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot write {model} (it needs" in err and "the disk is full" in err
    assert os.listdir(disk) == []


def test_png_grid_is_capped(tmp_path):
    from shc.gallery import PNG_MAX_QUERIES, PNG_MAX_RESULTS, write_png
    k, n = 500, 3 * PNG_MAX_QUERIES
    results = {"k": k, "queries": [{"label": None, "results": [{"index": i, "distance": 0, "relevant": None}
                                                               for i in range(k)]} for _ in range(n)]}
    pixels = np.zeros((4, 4), np.uint8)
    write_png(results, [pixels] * n, lambda i: pixels, tmp_path / "g.png")
    width, height = Image.open(tmp_path / "g.png").size
    assert width <= round(1.1 * (1 + PNG_MAX_RESULTS) * 110) and height <= round(1.25 * PNG_MAX_QUERIES * 110)
