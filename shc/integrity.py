"""What keeps a run directory honest on disk: file digests, the run's manifest and the lock of a run in progress.

``manifest.json`` is the last file shc-train writes: the model it describes (the stage-3 fingerprint, which
``checkpoints/hashnet.json`` names too) and the sha256 of every output file. A rerun removes it before it changes
anything in the directory, so a run that fails or is killed halfway leaves no manifest, and the readers
(``shc.load_run``, shc-encode, shc-search, shc-export, shc-eval on a run's codes) refuse the directory instead of
mixing the files of two models. A reader checks each file it reads against the manifest and refuses, naming the
file, one that differs. Torch-free: shc-eval checks a run's codes with it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
LOCK_FILE = ".shc-train.lock"


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def finish_hint(run) -> str:
    """How a user completes a run directory: its own training command again, which reuses what is finished."""
    return (f"finish it by rerunning its shc-train command (the same options and --out {run}) with --resume, "
            f"which reuses every finished stage")


# --------------------------------------------------------------------------------------------- the manifest
def retire_manifest(run_dir) -> None:
    """Called before a run changes anything in ``run_dir``: from now on readers refuse it until the new manifest."""
    (Path(run_dir) / MANIFEST_FILE).unlink(missing_ok=True)


def write_manifest(run_dir, model: str, files) -> None:
    """The run's last write: ``model`` (the stage-3 fingerprint) and the digest of each of ``files`` (paths
    relative to ``run_dir``)."""
    from shc.train.artifacts import write_json
    run = Path(run_dir)
    write_json(run / MANIFEST_FILE, {"format": MANIFEST_FORMAT, "model": model,
                                     "files": {str(name): file_digest(run / name) for name in files}})


def read_manifest(run_dir) -> dict:
    """The run's manifest; ValueError saying why a run without a usable one cannot be trusted."""
    run = Path(run_dir)
    try:
        manifest = json.loads((run / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise ValueError(f"{run}: the run's outputs are incomplete (no {MANIFEST_FILE}: its last shc-train was "
                         f"interrupted or failed, or predates manifests); {finish_hint(run)}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{run}: cannot read {MANIFEST_FILE} ({exc}); {finish_hint(run)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{run}: {MANIFEST_FILE} has an unknown format (written by another shc version?)")
    return manifest


def verified_bytes(run_dir, name, manifest: dict, model: str | None = None) -> bytes:
    """The bytes of the run's file ``name`` (relative to ``run_dir``) once they match the manifest, which must
    describe ``model`` when given; ValueError naming the file otherwise."""
    run = Path(run_dir)
    if model is not None and manifest.get("model") != model:
        raise ValueError(f"{run}: {MANIFEST_FILE} describes another model than checkpoints/hashnet.json (a "
                         f"training since that did not finish); {finish_hint(run)}")
    expected = manifest["files"].get(str(name))
    if expected is None:
        raise ValueError(f"{run}: {name} is not one of the run's outputs listed in {MANIFEST_FILE}; "
                         f"{finish_hint(run)}")
    try:
        data = (run / name).read_bytes()
    except OSError as exc:
        raise ValueError(f"{run}: cannot read {name} ({exc.strerror or exc}); {finish_hint(run)}") from None
    if bytes_digest(data) != expected:
        raise ValueError(f"{run}: {name} differs from the file the run wrote (its sha256 is not the one in "
                         f"{MANIFEST_FILE}: changed or damaged since); {finish_hint(run)}")
    return data


def run_of_codes_file(path) -> Path | None:
    """The run directory a codes file was written into by shc-train (``RUN/codes/NAME``), else None."""
    path = Path(path)
    run = path.parent.parent
    if path.parent.name == "codes" and (run / "checkpoints").is_dir():
        return run
    return None


# --------------------------------------------------------------------------------------------- the run lock
class RunInUse(ValueError):
    """Another process holds the lock of a run directory."""


@contextmanager
def run_lock(run_dir):
    """Hold ``run_dir``'s lock for the block: a second shc-train on the same directory refuses at once with
    RunInUse naming the holder (its pid, host, start time and command). The lock is the kernel's (flock), so it
    goes with the process that holds it, however that process ends; the lock file goes when the block ends."""
    run = Path(run_dir).absolute()
    created = [d for d in (run, *run.parents) if not d.exists()]  # removed again if the run writes nothing there
    run.mkdir(parents=True, exist_ok=True)
    path = run / LOCK_FILE
    f = _locked(path)
    try:
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}\n")
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock: whoever opened this file finds it gone, see _locked
        f.close()
        for directory in created:  # a run stopped before its first write leaves no empty directory behind
            try:
                directory.rmdir()
            except OSError:
                break


def _locked(path: Path):
    """``path`` opened and flock-ed. A file that was unlinked between our open and our lock (its holder ended)
    is no longer the lock: open the path again."""
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunInUse(f"{path.parent} is in use by another shc-train ({holder}); wait for it to finish or "
                           f"choose another --out") from None
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            f.seek(0)
            return f
        f.close()
