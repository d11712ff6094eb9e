"""What a user sees when an option is wrong or a run directory is damaged or unfinished: one plain line (exit 2)
before any work, or a note and a recomputation — never a traceback, a silent restart or a half-built cache."""
import numpy as np
import pytest

from shc.cli.cache import main as cache_main
from shc.cli.encode import main as encode_main
from shc.cli.train import main as train_main
from shc.data import load_dataset
from shc.data.testing import make_coco_like
from shc.train import run_pipeline
from test_train_pipeline import Recorder, tiny


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    make_coco_like(str(root), (4, 2, 4), size=(64, 48))
    return root


def one_line_error(capsys, main, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("option,message", [
    ("resize_size=-5", "resize_size must be a positive integer (pixels), got -5"),
    ("resize_size=0", "resize_size must be a positive integer (pixels), got 0"),
    ("crop_size=abc", "crop_size must be a positive integer (pixels), got 'abc'"),
    ("crop_size=300", "crop_size 300 must be <= resize_size 256"),
])
def test_bad_transform_sizes_fail_before_the_image_cache(tmp_path, capsys, coco_root, option, message):
    cache = tmp_path / "cache"
    common = ["--dataset", "coco", "--data-root", coco_root, "--data-option", option, "--image-cache", cache]
    assert message in one_line_error(capsys, train_main, *common, "--out", tmp_path / "run", "--no-progress")
    assert message in one_line_error(capsys, cache_main, "build", *common)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        key, _, value = option.partition("=")
        load_dataset("coco", str(coco_root), image_cache=str(cache), progress=False,
                     **{key: int(value) if value.lstrip("-").isdigit() else value})
    assert not cache.exists() or not any(cache.iterdir())  # nothing decoded, no .partial store left


def test_unreadable_image_hint_names_the_flag_of_either_command(tmp_path, capsys):
    root = tmp_path / "coco"
    make_coco_like(str(root), (4, 2, 4), size=(64, 48))
    (root / "train2014" / "COCO_train2014_000000000001.jpg").write_bytes(b"not a jpeg")
    code = cache_main(["build", "--dataset", "coco", "--data-root", str(root), "--data-option", "resize_size=32",
                       "--data-option", "crop_size=24", "--image-cache", str(tmp_path / "cache")])
    error = capsys.readouterr().err.splitlines()[-1]  # after the build's progress lines
    assert code == 2 and error.startswith("shc-cache: error: 1 of 6 images cannot be read")
    assert "--skip-unreadable" in error and "shc-train" not in error


@pytest.mark.parametrize("argv,message", [
    (["--data-option", "sizes=abc"], "synthetic: sizes must be three positive per-class counts"),
    (["--data-option", "num_classes='ten'"], "synthetic: num_classes must be an integer, got 'ten'"),
    (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--lambd", "-1"], "lambd must be a finite number >= 0, got -1.0"),
    (["--bits", "20000"], "bits must be at most 1024"),
    (["--threads", "100000"], "threads must be an integer from 1 to "),
    (["--seed", "-1"], "seed must be an integer from 0 to 2**63 - 1, got -1"),
    (["--workers", "100000"], "workers must be an integer from 0 to "),
    (["--batch-size", "5000"], "batch size 5000 is larger than the training split"),
    (["--data-option", "image_size=4"], "crop_size 4 (and resize_size) too small for the compact backbone"),
])
def test_option_messages_name_the_rule(tmp_path, capsys, argv, message):
    err = one_line_error(capsys, train_main, "--dataset", "synthetic", *argv, "--out", tmp_path / "x",
                         "--no-progress")
    assert message in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())  # refused before any work


@pytest.mark.parametrize("name", ["centers.npy", "similarity.npy"])
@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage"])
def test_unreadable_artifact_is_recomputed(tmp_path, name, content):
    first = run_pipeline(tiny(tmp_path))
    artifact = tmp_path / "run" / name
    good = np.load(artifact)
    artifact.write_bytes(content)
    again = run_pipeline(tiny(tmp_path))
    np.testing.assert_array_equal(np.load(artifact), good)  # recomputed: the same inputs give the same array
    assert again["mAP"] == first["mAP"]


def test_resume_with_changed_options_says_why_it_starts_over(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path, centers="csq"), callback=Recorder(stop_at=("stage3", 2)))
    capsys.readouterr()
    rec = Recorder()
    run_pipeline(tiny(tmp_path, centers="csq", lambd=0.01, resume=True), callback=rec)
    out = capsys.readouterr().out
    assert rec.epochs == [("stage3", 1), ("stage3", 2), ("stage3", 3)]  # started over: the options changed
    assert "cannot resume stage 3" in out and "(epoch 2 of 3)" in out and "starting stage 3 over" in out


def test_encode_on_an_interrupted_run_says_to_finish_training(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path, centers="csq"), callback=Recorder(stop_at=("stage3", 1)))
    run = tmp_path / "run"
    err = one_line_error(capsys, encode_main, "--run", run, "--images", run / "none.png", "--out", tmp_path / "c.npy")
    assert "training is unfinished" in err and "epoch 1 of 3" in err and "--resume" in err
    assert "predates" not in err
    (run / "checkpoints" / "hashnet.pt").unlink()  # interrupted before stage 3 began
    err = one_line_error(capsys, encode_main, "--run", run, "--images", run / "none.png", "--out", tmp_path / "c.npy")
    assert "training is unfinished" in err and "--resume" in err


def test_resume_from_an_unreadable_checkpoint_says_so(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path, centers="csq"), callback=Recorder(stop_at=("stage3", 2)))
    from shc.train.artifacts import checkpoint_digest_path
    ckpt = tmp_path / "run" / "checkpoints" / "hashnet.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    checkpoint_digest_path(ckpt).unlink()  # an older shc's checkpoint (with its digest, the digest check says so)
    capsys.readouterr()
    rec = Recorder()
    run_pipeline(tiny(tmp_path, centers="csq", resume=True), callback=rec)
    out = capsys.readouterr().out
    assert rec.epochs == [("stage3", 1), ("stage3", 2), ("stage3", 3)]
    assert f"note: cannot resume stage 3 from {ckpt}: it cannot be read (truncated, damaged or not a checkpoint); " \
           f"starting stage 3 over" in out


def _train_process(tmp_path, *extra):
    import os
    import subprocess
    import sys
    argv = [sys.executable, "-m", "shc.cli.train", "--dataset", "synthetic", "--centers", "csq", "--bits", "16",
            "--epoch", "50", "--threads", "1", "--no-progress", "--out", str(tmp_path / "run"), *extra]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith(field + ":"))


@pytest.mark.parametrize("signum, code, said", [(15, 143, "stopped (SIGTERM)"), (2, 130, "interrupted")])
def test_sigterm_and_ctrl_c_stop_in_one_line_saying_to_resume(tmp_path, signum, code, said):
    """Once training runs, and in the first moments while the modules import (Ctrl-C there printed a
    KeyboardInterrupt traceback): one line naming --resume, never a traceback or a silent exit."""
    import time
    for wait_for_epoch in (True, False):
        process = _train_process(tmp_path)
        if wait_for_epoch:
            for line in process.stdout:
                if "stage3 epoch 1/50" in line:
                    break
        else:  # as soon as shc-train runs (its SIGTERM handler is there): torch and the rest still import
            while not int(_status(process.pid, "SigCgt"), 16) & (1 << 14) and process.poll() is None:
                time.sleep(0.005)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        assert process.returncode == code, err
        assert err.strip().splitlines()[-1] == f"shc-train: {said}; rerun the same command with --resume to continue"
        assert "Traceback" not in err


def test_an_empty_training_split_is_refused_not_trained(tmp_path, capsys):
    from test_data_memory import make_fashion_mnist
    make_fashion_mnist(str(tmp_path / "fm"))
    err = one_line_error(capsys, train_main, "--data-root", tmp_path / "fm", "--data-option", "train_per_class=0", "--data-option", "query_per_class=2",
                         "--out", tmp_path / "x", "--no-progress")
    assert "fashion-mnist: the train split is empty" in err


def test_list_file_errors_name_the_line_at_fault(tmp_path):
    from shc.data.files import read_list_file
    for body, message in (("a.jpg 0 1\nb.jpg 1 0 1\n", ":2: 3 multi-hot labels, the first line has 2"),
                          ("a.jpg 0 1\nb.jpg 0 2\n", ":2: multi-hot labels must be 0 or 1, got '0 2'"),
                          ("a.jpg\t1\nb\0.jpg\t0\n", ":2: the path holds a NUL byte")):
        (tmp_path / "l.txt").write_text(body)
        with pytest.raises(ValueError, match=f"^{tmp_path / 'l.txt'}{message}"):
            read_list_file(str(tmp_path / "l.txt"), str(tmp_path))


def test_packbits_hint_only_for_bytes():
    from shc.codes import pack_codes
    with pytest.raises(ValueError, match=r"32 columns but bits=16$"):
        pack_codes(np.ones((2, 32), np.int8), 16)
    with pytest.raises(ValueError, match=r"3 columns but bits=16 \(np.packbits input needs 2 uint8 columns\)"):
        pack_codes(np.full((2, 3), 7, np.uint8), 16)


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed must be an integer from 0 to 2**63 - 1, got -1"),
    (["--classes", "10000000"], "10,000,000 classes x 64 bits: csq centers need about 1600.0 TB of memory"),
])
def test_centers_refuse_a_bad_seed_and_sizes_that_cannot_be_allocated(tmp_path, capsys, argv, message):
    from shc.cli.centers import main as centers_main
    argv = ["--method", "csq", "--bits", "64", "--classes", "10", "--out", tmp_path / "c.npy", *argv]
    err = one_line_error(capsys, centers_main, *argv)
    assert message in err and not (tmp_path / "c.npy").exists()
