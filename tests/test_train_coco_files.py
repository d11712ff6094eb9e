"""`shc-train --dataset coco --bits 64` end to end on a tiny generated COCO-shaped set (DeepHash list files,
80 multi-hot columns, JPEGs): through the image cache, and bit-identical with the cache turned off."""
import json

import numpy as np
import pytest

from shc.cli.eval import main as eval_main
from shc.cli.train import main
from shc.data.testing import make_coco_like


def test_shc_train_coco_64_bits_end_to_end(tmp_path, capsys):
    root = make_coco_like(str(tmp_path / "coco"), (24, 8, 40), size=(64, 48))
    common = ["--dataset", "coco", "--data-root", root, "--bits", "64", "--backbone", "compact",
              "--data-option", "resize_size=40", "--data-option", "crop_size=32", "--epoch", "2",
              "--classify_epoch", "1", "--test_map", "1", "--batch-size", "8", "--threads", "1", "--no-progress"]
    cached, uncached = tmp_path / "run-cached", tmp_path / "run-uncached"
    assert main(common + ["--out", str(cached), "--image-cache", str(tmp_path / "cache")]) == 0, \
        capsys.readouterr().err
    assert main(common + ["--out", str(uncached), "--image-cache", "off", "--workers", "2"]) == 0, \
        capsys.readouterr().err
    assert any((tmp_path / "cache").iterdir())  # the images were decoded once into the cache

    metrics = json.loads((cached / "metrics.json").read_text())
    assert metrics["dataset"] == "coco" and metrics["bits"] == 64 and metrics["centers"] == "shc"
    codes = {n: np.load(cached / "codes" / f"{n}.npy") for n in ("query_codes", "db_codes", "db_labels")}
    assert codes["query_codes"].shape == (8, 64) and codes["db_codes"].shape == (40, 64)
    assert codes["db_labels"].shape == (40, 80) and set(np.unique(codes["db_codes"])) <= {-1, 1}
    assert all(0 <= v <= 1 for v in metrics["mAP"].values())
    # the cache holds exactly the pixels a fresh decode gives: the two runs train and encode identically
    for name in ("query_codes", "db_codes"):
        assert np.array_equal(codes[name], np.load(uncached / "codes" / f"{name}.npy"))
    # and shc-eval on the saved codes reproduces metrics.json
    c = cached / "codes"
    assert eval_main(["--query-codes", str(c / "query_codes.npy"), "--db-codes", str(c / "db_codes.npy"),
                      "--query-labels", str(c / "query_labels.npy"), "--db-labels", str(c / "db_labels.npy"),
                      "--topk", "100", "1000", "5000", "all",  # COCO runs report the papers' @5000 too
                      "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["mAP"] == metrics["mAP"]


@pytest.mark.filterwarnings("ignore:csq")  # 80 classes at 16 bits: CSQ cannot reach d, as it says
def test_skip_unreadable_flag(tmp_path, capsys):
    root = make_coco_like(str(tmp_path / "coco"), (6, 3, 8), size=(48, 40))
    bad = tmp_path / "coco" / "train2014" / "COCO_train2014_000000000007.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    common = ["--dataset", "coco", "--data-root", root, "--bits", "16", "--backbone", "compact", "--centers", "csq",
              "--data-option", "resize_size=32", "--data-option", "crop_size=24", "--epoch", "1", "--test_map", "1",
              "--batch-size", "4", "--threads", "1", "--no-progress", "--image-cache", str(tmp_path / "cache")]
    assert main(common + ["--out", str(tmp_path / "fails")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "COCO_train2014_000000000007.jpg" in err and "--skip-unreadable" in err
    assert main(common + ["--out", str(tmp_path / "skips"), "--skip-unreadable"]) == 0
    assert "skipping 1 of 11 images" in capsys.readouterr().err
    assert np.load(tmp_path / "skips" / "codes" / "db_codes.npy").shape == (7, 16)
