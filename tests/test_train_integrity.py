"""Results that never lie (issue 25): changed images retrain; a run's outputs are all of one model or refused; an
encoded database's codes and paths agree or are refused; damaged checkpoints are retrained or refused; a failed
rerun leaves a finished run as it was; two runs never share a directory. Full disks are a small tmpfs where the
test may mount one, and a write that raises ENOSPC everywhere."""
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import shc
from shc.cli.encode import main as encode_main
from shc.cli.eval import main as eval_main
from shc.cli.export import main as export_main
from shc.cli.search import main as search_main
from shc.cli.train import main as train_main
from shc.data.memory import InMemorySplit
from shc.data.synthetic import synthetic
from shc.integrity import file_digest, run_lock
from shc.train import TrainConfig, run_pipeline
from test_train_pipeline import TINY, Recorder, tiny

CODES = ("query_codes", "db_codes", "query_labels", "db_labels")


def cli(main, capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(directory: Path) -> dict:
    """Every file under ``directory`` and its digest."""
    return {str(p.relative_to(directory)): file_digest(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def database_images():
    """The database images of TINY's synthetic dataset, as the run encoded them."""
    return synthetic(**TINY["data_options"]).database.images


def eval_argv(out, **files):
    codes = {name: out / "codes" / f"{name}.npy" for name in CODES}
    codes.update(files)
    return [a for name in CODES for a in (f"--{name.replace('_', '-')}", codes[name])] + ["--quiet"]


def assert_refused(out, capsys, message):
    """Every reader of the run refuses it in one line containing ``message``."""
    image = out.parent / "probe.png"
    Image.fromarray(database_images()[0]).save(image)
    for main, argv in ((search_main, ["--run", out, "--images", image, "--no-progress"]),
                       (encode_main, ["--run", out, "--images", image, "--out", out.parent / "probe.npy",
                                      "--no-progress"]),
                       (export_main, ["--run", out, "--format", "torch", "--out", out.parent / "probe.pt2"])):
        code, _, err = cli(main, capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (main.__module__, err)
    with pytest.raises(ValueError, match=re.escape(message)):
        shc.load_run(out, device="cpu")


def assert_all_of_one_model(out):
    """The run's saved codes are exactly what its model (as the readers load it) gives its images."""
    encoder = shc.load_run(out, device="cpu")
    assert np.array_equal(encoder.encode(database_images()), np.load(out / "codes" / "db_codes.npy"))
    query = synthetic(**TINY["data_options"]).query.images
    assert np.array_equal(encoder.encode(query), np.load(out / "codes" / "query_codes.npy"))


def failing_writes(monkeypatch, module, function: str, fails, exc=None):
    """``module.function(path, ...)`` raises ``exc`` (a full disk) for a path that ``fails(path)``."""
    real = getattr(module, function)

    def write(path, *args, **kwargs):
        if fails(Path(path)):
            raise exc or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(module, function, write)


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MB tmpfs mounted at tmp_path/disk (skipped where mounting is not allowed); ``fill(free)`` leaves
    ``free`` bytes free on it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the ENOSPC stubs cover it")

    def fill(free: int):
        filler = disk / "filler"
        filler.unlink(missing_ok=True)
        size = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - free
        with open(filler, "wb") as f:
            f.write(b"\0" * max(size, 0))
        assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize == free
    yield disk, fill
    subprocess.run(["umount", "-l", str(disk)], check=True)


# ------------------------------------------------------------------------------ 1. changed images retrain
OPTIONS = dict(resize_size=20, crop_size=16)


def paint_images(root: Path, seed: int) -> None:
    """An ImageFolder tree under root, 3 classes, one hue each; the same names and sizes for every seed."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", 4), ("test", 2)):
        for c in range(3):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (20, 24, 3)) + np.eye(3, dtype=np.int64)[c] * 150
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / f"class{c}" / f"{i}.png")


def image_run(tmp_path, data_root, **overrides):
    return TrainConfig(**{**dict(dataset="custom", data_root=str(data_root), data_options=OPTIONS,
                                 backbone="compact", bits=16, epochs=2, classify_epochs=1, batch_size=4, test_map=2,
                                 threads=1, workers=0, progress=False, out=str(tmp_path / "run"),
                                 stage1_cache=str(tmp_path / "stage1")), **overrides})


@pytest.mark.parametrize("image_cache", [None, "off"])
def test_changed_images_are_trained_on_again(tmp_path, capsys, image_cache):
    data = tmp_path / "data"
    paint_images(data, seed=0)
    run_pipeline(image_run(tmp_path, data, image_cache=image_cache))
    rec = Recorder()
    run_pipeline(image_run(tmp_path, data, image_cache=image_cache), callback=rec)
    assert rec.epochs == []  # unchanged: everything reused
    capsys.readouterr()

    paint_images(data, seed=1)  # other pictures under the same names, in the same lists
    rec = Recorder()
    run_pipeline(image_run(tmp_path, data, image_cache=image_cache), callback=rec)
    assert rec.stages() == {"stage1", "stage3"} and "reusing" not in capsys.readouterr().out

    other = tmp_path / "other"  # another folder holding the same lists
    paint_images(other, seed=2)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(image_run(tmp_path, other, image_cache=image_cache), callback=Recorder(("stage3", 1)))
    capsys.readouterr()
    paint_images(other, seed=3)  # changed while the run was interrupted: --resume must not continue it
    rec = Recorder()
    run_pipeline(image_run(tmp_path, other, image_cache=image_cache, resume=True), callback=rec)
    assert rec.epochs == [("stage1", 1), ("stage3", 1), ("stage3", 2)]
    assert "cannot resume stage 3" in capsys.readouterr().out


def test_content_id_follows_every_pixel_label_and_file():
    images = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(4)

    def content(images, labels):
        return InMemorySplit(images, labels, mean=0.5, std=0.25).content_id()
    changed = images.copy()
    changed[3, 7, 7, 2] ^= 1
    assert content(images, labels) == content(images.copy(), labels.copy())
    assert content(changed, labels) != content(images, labels)
    assert content(images, labels[::-1].copy()) != content(images, labels)
    assert synthetic(**TINY["data_options"]).content_id == synthetic(**TINY["data_options"]).content_id
    assert synthetic(**TINY["data_options"], noise=0.6).content_id != synthetic(**TINY["data_options"]).content_id


# ------------------------------------------------------------------------------ 2. all of one model, or refused
def test_manifest_lists_every_output_of_the_model(tmp_path):
    metrics = run_pipeline(tiny(tmp_path))
    out = tmp_path / "run"
    manifest = json.loads((out / "manifest.json").read_text())
    config = json.loads((out / "checkpoints" / "hashnet.json").read_text())
    assert manifest["model"] == config["fingerprint"] == metrics["fingerprints"]["stage3"]
    files = snapshot(out)
    del files["manifest.json"]
    assert manifest["files"] == files  # every file of the run, each with its sha256


def test_a_rerun_that_fails_writing_outputs_leaves_a_run_every_reader_refuses(tmp_path, capsys, monkeypatch):
    """A rerun for another model fails at each of its output writes in turn (a full disk; a kill): no reader
    takes the half-rewritten run, the rerun with --resume finishes it without training, and then all is one
    model."""
    import shc.train.pipeline as pipeline
    first = run_pipeline(tiny(tmp_path, centers="csq"))
    out = tmp_path / "run"
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for name, exc in (("query_codes.npy", None), ("db_codes.npy", KeyboardInterrupt()), ("db_labels.npy", None)):
        with monkeypatch.context() as patch:
            failing_writes(patch, pipeline, "write_array", lambda p: p.name == name, exc)
            with pytest.raises((OSError, KeyboardInterrupt)):
                run_pipeline(tiny(tmp_path, centers="csq", lambd=1e-2))
        assert not (out / "metrics.json").exists()
        assert_refused(out, capsys, "the run's outputs are incomplete (no manifest.json")
        code, _, err = cli(eval_main, capsys, *eval_argv(out))
        assert code == 2 and "outputs are incomplete" in err and err.startswith("shc-eval: error: --query-codes")
    rec = Recorder()
    second = run_pipeline(tiny(tmp_path, centers="csq", lambd=1e-2, resume=True), callback=rec)
    assert rec.epochs == [] and second["mAP"] != first["mAP"]
    assert_all_of_one_model(out)
    code, _, err = cli(eval_main, capsys, *eval_argv(out, db_codes=old / "codes" / "db_codes.npy"))
    assert code == 2 and "runs of different models" in err
    code, _, err = cli(eval_main, capsys, "--codes", "new", out / "codes" / "query_codes.npy", out / "codes" /
                       "db_codes.npy", "--codes", "mixed", out / "codes" / "query_codes.npy", old / "codes" /
                       "db_codes.npy", *eval_argv(out)[4:])
    assert code == 2 and f"--codes mixed {out / 'codes' / 'query_codes.npy'} and --codes mixed" in err
    assert cli(eval_main, capsys, *eval_argv(out))[0] == 0
    (out / "codes" / "db_labels.npy").write_bytes((old / "codes" / "db_codes.npy").read_bytes())
    code, _, err = cli(search_main, capsys, "--run", out, "--images", tmp_path / "probe.png", "--no-progress")
    assert code == 2 and "codes/db_labels.npy differs from the file the run wrote" in err


@pytest.mark.parametrize("free", [0, 4096, 12288])
def test_a_rerun_on_a_full_disk_never_mixes_two_models(tmpfs, capsys, free):
    """The disk fills up as a rerun for another model ends its training (after the last checkpoint): whatever
    write fails, the readers refuse the run; freed, --resume finishes it as one model."""
    disk, fill = tmpfs
    run_pipeline(tiny(disk, centers="csq", epochs=1, test_map=1))
    out = disk / "run"

    def full(stage, record):
        fill(free)
    with pytest.raises(OSError) as failed:
        run_pipeline(tiny(disk, centers="csq", epochs=1, test_map=1, lambd=1e-2), callback=full)
    assert failed.value.errno == errno.ENOSPC or "No space left" in str(failed.value)
    (disk / "filler").unlink()
    assert_refused(out, capsys, "the run's outputs are incomplete (no manifest.json")
    run_pipeline(tiny(disk, centers="csq", epochs=1, test_map=1, lambd=1e-2, resume=True))
    assert_all_of_one_model(out)


# ------------------------------------------------------------------------------ 3. encoded codes and their sidecar
@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """(run dir, two lists of 40 PNG images each) of a tiny synthetic run; their names make a sidecar of two
    4 kB pages, the codes file takes one."""
    root = tmp_path_factory.mktemp("encoded")
    run_pipeline(TrainConfig(**{**TINY, "centers": "csq", "out": str(root / "run")}))
    images = []
    for i, pixels in enumerate(database_images()):
        images.append(str(root / f"{'an-image-with-a-long-name-' * 5}{i:04d}.png"))
        Image.fromarray(pixels).save(images[-1])
    return root / "run", images[:40], images[40:]


def assert_codes_match_their_paths_or_are_refused(run, db, capsys):
    """shc-search --db refuses the file, or its sidecar's paths are the images its codes encode."""
    paths = json.loads(db.with_suffix(".json").read_text())["paths"]
    code, _, err = cli(search_main, capsys, "--run", run, "--images", paths[0], "--db", db, "--no-progress",
                       "--quiet")
    if code == 2:
        assert "is not the codes file" in err and err.count("\n") == 1
        return False
    assert code == 0, err
    assert np.array_equal(shc.load_run(run, device="cpu").encode(paths), np.load(db))
    return True


@pytest.mark.parametrize("failing", [".npy", ".json"])
def test_encode_that_fails_halfway_leaves_matching_codes_or_a_refusal(encoded, tmp_path, capsys, monkeypatch,
                                                                        failing):
    import shc.atomic  # every output's one write path
    run, first, second = encoded
    db = tmp_path / "db.npy"
    assert cli(encode_main, capsys, "--run", run, "--images", *first, "--out", db, "--no-progress")[0] == 0
    failing_writes(monkeypatch, shc.atomic, "atomic_write", lambda p: p.suffix == failing)
    code, _, err = cli(encode_main, capsys, "--run", run, "--images", *second, "--out", db, "--no-progress")
    assert code == 2 and "No space left on device" in err
    kept = assert_codes_match_their_paths_or_are_refused(run, db, capsys)
    assert kept == (failing == ".json")  # the sidecar goes first: its failure leaves the old pair whole


@pytest.mark.parametrize("free", [0, 4096])
def test_encode_on_a_full_disk_leaves_matching_codes_or_a_refusal(encoded, tmpfs, capsys, free):
    run, first, second = encoded
    disk, fill = tmpfs
    db = disk / "db.npy"
    assert cli(encode_main, capsys, "--run", run, "--images", *first, "--out", db, "--no-progress")[0] == 0
    fill(free)
    code, _, err = cli(encode_main, capsys, "--run", run, "--images", *second, "--out", db, "--no-progress")
    assert code == 2 and "the disk is full" in err
    assert_codes_match_their_paths_or_are_refused(run, db, capsys)


# ------------------------------------------------------------------------------ 4. damaged checkpoints
def flip_a_weight(checkpoint: Path) -> None:
    """Flip the top exponent bit of one float of the largest tensor: torch.load still reads the file."""
    with zipfile.ZipFile(checkpoint) as z:
        entry = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(checkpoint.read_bytes())
    with open(checkpoint, "rb") as f:  # the local header's own extra field may differ from the directory's
        f.seek(entry.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    start = entry.header_offset + 30 + name_len + extra_len
    data[start + 4 * (entry.file_size // 8) + 3] ^= 0x40
    checkpoint.write_bytes(bytes(data))
    torch.load(checkpoint, map_location="cpu", weights_only=True)  # not noticed here


def test_a_damaged_checkpoint_is_trained_again_or_refused(tmp_path, capsys):
    first = run_pipeline(tiny(tmp_path, centers="csq"))
    out = tmp_path / "run"
    codes = np.load(out / "codes" / "db_codes.npy")
    flip_a_weight(out / "checkpoints" / "hashnet.pt")
    assert_refused(out, capsys, "checkpoints/hashnet.pt differs from the file the run wrote")
    rec = Recorder()
    again = run_pipeline(tiny(tmp_path, centers="csq"), callback=rec)
    log = capsys.readouterr().out
    assert "hashnet.pt is not the file that was written" in log and "training stage 3 from the start" in log
    assert rec.epochs == [("stage3", 1), ("stage3", 2), ("stage3", 3)]
    assert again["mAP"] == first["mAP"] and np.array_equal(np.load(out / "codes" / "db_codes.npy"), codes)
    assert_all_of_one_model(out)


def test_a_damaged_checkpoint_is_not_resumed(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path), callback=Recorder(stop_at=("stage3", 2)))
    flip_a_weight(tmp_path / "run" / "checkpoints" / "classifier.pt")
    flip_a_weight(tmp_path / "run" / "checkpoints" / "hashnet.pt")
    (tmp_path / "run" / "similarity.npy").unlink()  # else stage 1 is reused without reading the classifier
    capsys.readouterr()
    rec = Recorder()
    run_pipeline(tiny(tmp_path, resume=True), callback=rec)
    assert rec.epochs == [("stage1", 1), ("stage1", 2), ("stage3", 1), ("stage3", 2), ("stage3", 3)]
    assert capsys.readouterr().out.count("is not the file that was written") == 2


def test_a_crash_between_the_digest_and_the_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    """The sidecar is written before the new checkpoint replaces the old: a crash in between leaves the old one,
    still vouched for."""
    import shc.train.artifacts as artifacts
    path = tmp_path / "c.pt"
    artifacts.save_checkpoint(path, {"epoch": 1, "epochs": 2, "x": torch.ones(3)}, "fp")
    failing_writes(monkeypatch, artifacts.os, "replace", lambda tmp: tmp.name.startswith(".c.pt.")
                   and not tmp.name.startswith(".c.pt.sha256."), KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        artifacts.save_checkpoint(path, {"epoch": 2, "epochs": 2, "x": torch.zeros(3)}, "fp")
    assert artifacts.load_checkpoint(path, "fp")["epoch"] == 1


# ------------------------------------------------------------------------------ 5. a failed rerun touches nothing
@pytest.mark.parametrize("argv", [
    ["--dataset", "synthetic", "--data-option", "bogus=1"],
    ["--dataset", "synthetic", "--num_classes", "7"],
    ["--dataset", "custom", "--data-root", "/nonexistent/data"],
    ["--dataset", "custom"],
])
def test_a_failed_rerun_leaves_the_finished_run_as_it_was(tmp_path, capsys, argv):
    run_pipeline(tiny(tmp_path, centers="csq", epochs=1, test_map=1))
    out = tmp_path / "run"
    before = snapshot(out)
    code, _, err = cli(train_main, capsys, *argv, "--out", out, "--no-progress", "--threads", 1)
    assert code == 2 and err.count("\n") == 1, err
    assert snapshot(out) == before  # metrics.json and the manifest included


# ------------------------------------------------------------------------------ 12. one run per directory
def test_a_second_run_on_the_same_directory_refuses_naming_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom shc.integrity import run_lock\n"
                               "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n",
         str(out), "--out", str(out)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli(train_main, capsys, "--dataset", "synthetic", "--out", out, "--no-progress")
        assert code == 2 and err.count("\n") == 1
        assert f"{out} is in use by another shc-train (pid {holder.pid} on " in err and f"--out {out}" in err
        assert list(out.iterdir()) == [out / ".shc-train.lock"]  # nothing else was touched
    finally:
        holder.kill()
        holder.wait()
    with run_lock(out):  # the kernel let go of the lock with its holder
        pass
    assert list(out.iterdir()) == []
