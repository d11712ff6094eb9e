"""Every output goes through shc.atomic.atomic_write: a full disk is one error naming the file (never a traceback,
a SIGBUS or half a file), nothing is left half-written, and temporary files of killed writers are removed."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from shc.atomic import atomic_write, write_npy
from shc.train.artifacts import save_checkpoint


def test_a_writer_failing_with_enospc_is_one_error_naming_the_file(tmp_path):
    def full(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    (tmp_path / "a.npy").write_bytes(b"old")
    with pytest.raises(OSError, match=rf"^cannot write {tmp_path / 'a.npy'}: the disk is full \(.* free in "
                                      rf"{tmp_path}\); free some space and rerun$") as e:
        atomic_write(tmp_path / "a.npy", full)
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["a.npy"] and (tmp_path / "a.npy").read_bytes() == b"old"


def test_output_is_fsynced_file_then_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    write_npy(tmp_path / "a.npy", np.arange(3))
    assert synced[-1] == str(tmp_path) and synced[-2].startswith(str(tmp_path / ".a.npy."))
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.arange(3))


def test_temporaries_of_killed_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".a.npy.{dead}.x1y2.tmp"
    older = tmp_path / ".a.npy.k3j_9a.tmp"  # the naming before writers recorded their pid
    live = tmp_path / f".a.npy.{os.getppid()}.z3.tmp"
    other = tmp_path / f".b.npy.{dead}.q.tmp"
    for f in (stale, older, live, other):
        f.write_bytes(b"x")
    write_npy(tmp_path / "a.npy", np.zeros(2))
    assert sorted(os.listdir(tmp_path)) == sorted(["a.npy", live.name, other.name])


def test_checkpoint_on_a_full_disk(small_disk):
    disk = small_disk(1 << 20)
    state = {"model": {"w": torch.zeros(1 << 19)}, "epoch": 1, "epochs": 2}  # 2 MB
    with pytest.raises(OSError, match=f"^cannot write {disk / 'c.pt'}: the disk is full"):
        save_checkpoint(disk / "c.pt", state, "fp")
    assert os.listdir(disk) == []


def test_train_on_a_full_disk_says_so_in_one_line(small_disk, capsys):
    from shc.cli.train import main
    disk = small_disk(256 << 10)
    code = main(["--dataset", "synthetic", "--bits", "16", "--centers", "csq", "--epoch", "1", "--threads", "1",
                 "--no-progress", "--out", str(disk / "run"), "--backbone", "compact"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"shc-train: error: cannot write {disk / 'run'}/") and "the disk is full" in err[0]
