"""Using a run trained on image files (the `custom` ImageFolder dataset): paths go through the pipeline's own
FileSplit loader (resize, centre crop, ImageNet normalisation), results carry database paths. And a multi-label
(synthetic, RGB in memory) run's relevance marks."""
import json

import numpy as np
import pytest
from PIL import Image

from shc.cli.encode import main as encode_main
from shc.cli.search import main as search_main
from shc.data import load_dataset
from shc.train import TrainConfig, run_pipeline

CLASSES = 4
PER_SPLIT = {"train": 6, "test": 2, "database": 4}
OPTIONS = dict(resize_size=36, crop_size=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run dir, data root): colour images of several sizes, one hue per class, in train/ test/ database/."""
    root = tmp_path_factory.mktemp("files")
    data = root / "data"
    rng = np.random.default_rng(0)
    for split, count in PER_SPLIT.items():
        for c in range(CLASSES):
            (data / split / f"class{c}").mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(36, 60, 2)
                pixels = rng.integers(0, 80, (h, w, 3)) + np.eye(3, dtype=np.int64)[c % 3] * (100 + 40 * (c // 3))
                Image.fromarray(pixels.astype(np.uint8)).save(data / split / f"class{c}" / f"{i}.png")
    out = root / "run"
    run_pipeline(TrainConfig(dataset="custom", data_root=str(data), data_options=OPTIONS, backbone="compact",
                             centers="csq", bits=16, epochs=1, batch_size=8, threads=1, progress=False,
                             out=str(out)))
    return out, data


def test_paths_encode_and_search_like_the_pipeline(run, tmp_path):
    out, data = run
    dataset = load_dataset("custom", data_root=str(data), **OPTIONS)
    list_file = tmp_path / "queries.txt"
    list_file.write_text("".join(p + "\n" for p in dataset.query.paths))  # plain paths, no labels
    assert encode_main(["--run", str(out), "--images", str(list_file), "--out", str(tmp_path / "q.npy"),
                        "--workers", "1", "--no-progress"]) == 0
    saved = np.load(out / "codes" / "query_codes.npy")
    assert np.array_equal(np.load(tmp_path / "q.npy"), saved)

    assert search_main(["--run", str(out), "--images", str(data / "test"), "--topk", "3", "--json",
                        str(tmp_path / "r.json"), "--no-progress", "--quiet"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    db = np.load(out / "codes" / "db_codes.npy")
    for q, query_codes in zip(results["queries"], saved):  # the test/ tree sorts like the query list
        distance = (16 - db.astype(int) @ query_codes.astype(int)) // 2
        order = np.argsort(distance, kind="stable")[:3]
        assert [r["index"] for r in q["results"]] == order.tolist()
        assert [r["path"] for r in q["results"]] == [dataset.database.paths[i] for i in order]
        assert q["label"] == q["image"].split("/")[-2]  # class directory = class name
        assert all(r["relevant"] == (r["label"] == q["label"]) for r in q["results"])


def test_search_shows_the_paths_the_run_encoded_even_when_the_lists_change(run, tmp_path, capsys):
    import shutil
    from shc.integrity import read_manifest, write_manifest
    out, data = run
    recorded = json.loads((out / "codes" / "db_paths.json").read_text())
    assert recorded == load_dataset("custom", data_root=str(data), **OPTIONS).database.paths
    # a copy of the run pointed at a copy of its data (its manifest rewritten for the edited hashnet.json), whose
    # dataset then loses one database image
    copy, moved = tmp_path / "run", tmp_path / "data"
    shutil.copytree(out, copy)
    shutil.copytree(data, moved)
    config = json.loads((copy / "checkpoints" / "hashnet.json").read_text())
    config["dataset"]["data_root"] = str(moved)
    (copy / "checkpoints" / "hashnet.json").write_text(json.dumps(config))
    manifest = read_manifest(copy)
    write_manifest(copy, manifest["model"], manifest["files"])
    search = ["--run", str(copy), "--images", str(data / "test"), "--topk", "2", "--json", str(tmp_path / "r.json"),
              "--no-progress", "--quiet"]
    (moved / "database" / "class0" / "0.png").unlink()
    assert search_main(search) == 0  # the recorded paths: the lists are not read
    results = json.loads((tmp_path / "r.json").read_text())
    assert all(r["path"] == recorded[r["index"]] for q in results["queries"] for r in q["results"])
    (copy / "codes" / "db_paths.json").unlink()
    assert search_main(search) == 2  # without its recorded paths the run's codes cannot be matched to images
    assert "cannot read codes/db_paths.json" in capsys.readouterr().err


def test_pil_images_are_preprocessed_as_the_file_loader_does(run):
    """Encoding decoded images (not paths) must give what FileSplit gives the same files."""
    import shc
    out, data = run
    dataset = load_dataset("custom", data_root=str(data), **OPTIONS)
    encoder = shc.load_run(out, device="cpu")
    images = [Image.open(p) for p in dataset.query.paths]
    assert np.array_equal(encoder.encode(images), np.load(out / "codes" / "query_codes.npy"))
    assert encoder.pixels(images).shape == (len(images), 3, 32, 32)


def test_torch_export_of_an_rgb_run_reproduces_its_codes(run, tmp_path):
    """Resize and crop stay outside the exported graph: encoder.pixels makes its input from the image files."""
    import shc
    from shc.cli.export import main as export_main
    from shc.export import run_exported
    out, data = run
    assert export_main(["--run", str(out), "--format", "torch", "--out", str(tmp_path / "m.pt2")]) == 0
    dataset = load_dataset("custom", data_root=str(data), **OPTIONS)
    pixels = shc.load_run(out, device="cpu").pixels(dataset.query.paths)
    assert np.array_equal(run_exported(tmp_path / "m.pt2", "torch", pixels), np.load(out / "codes" / "query_codes.npy"))


def test_multi_label_run_marks_a_shared_label_relevant(tmp_path):
    """Multi-hot labels: a list file's 'path 0 1 0 ...' rows for the queries, the run's multi-hot database labels;
    relevant = any label in common."""
    import shc
    from shc.data.synthetic import synthetic
    out = tmp_path / "run"
    options = dict(sizes=(8, 3, 8), image_size=16, multi_label=True)
    run_pipeline(TrainConfig(dataset="synthetic", data_options=options, centers="csq", bits=16, epochs=1,
                             threads=1, progress=False, out=str(out)))
    query = synthetic(**options).query
    lines = []
    for i, (pixels, hot) in enumerate(zip(query.images[:6], query.labels)):
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png " + " ".join(map(str, hot)))
    (tmp_path / "queries.txt").write_text("\n".join(lines) + "\n")
    assert search_main(["--run", str(out), "--images", str(tmp_path / "queries.txt"), "--topk", "5", "--json",
                        str(tmp_path / "r.json"), "--no-progress", "--quiet"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    db_labels = np.load(out / "codes" / "db_labels.npy")
    encoded = shc.load_run(out, device="cpu").encode([str(tmp_path / f"{i}.png") for i in range(6)])
    assert np.array_equal(encoded, np.load(out / "codes" / "query_codes.npy")[:6])  # 3-channel in-memory data
    for q, hot in zip(results["queries"], query.labels):
        assert len(q["label"]) == hot.sum() and isinstance(q["label"], list)
        assert [r["relevant"] for r in q["results"]] == \
            [bool((db_labels[r["index"]] & hot).any()) for r in q["results"]]
