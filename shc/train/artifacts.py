"""Fingerprinted, atomically written stage artifacts.

Every artifact carries the fingerprint of everything it was computed from (options, seeds, data identity,
the content of upstream artifacts). A rerun reuses an artifact only when its fingerprint matches, so a stale
artifact is never used. Writes go to a temporary file in the same directory and are moved into place with
os.replace, so an interrupted run leaves either the old artifact or the new one, never half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

FORMAT_VERSION = 1  # bump when the meaning of an artifact changes, so old ones are recomputed


def fingerprint(**inputs: Any) -> str:
    """sha256 of a canonical JSON rendering of ``inputs`` (the stage's options and upstream hashes)."""
    blob = json.dumps({"format": FORMAT_VERSION, **inputs}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()


def array_digest(array: np.ndarray) -> str:
    """Content hash of an array (dtype, shape and bytes) — how downstream stages depend on upstream ones."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def _jsonable(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (Path, torch.device)):
        return str(obj)
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"cannot fingerprint {type(obj).__name__}")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the file onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; the artifact is a file like any other
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Check, before any work is done for it, that files can be written in ``path``: OSError naming the directory
    otherwise. A missing ``path`` is not created here (a run stopped by a later argument check leaves no empty
    directory behind): its nearest existing parent must be a writable directory, and the first artifact written
    creates it."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        if existing == path:  # a real write, as permissions alone do not tell (read-only mounts, ACLs)
            fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
            os.close(fd)
            os.unlink(probe)
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"{existing} is not writable")
    except OSError as exc:
        raise OSError(f"output directory {str(path)!r} cannot be written: {exc.strerror or exc}") from None
    return path


def write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_jsonable)
            f.write("\n")
    atomic_write(path, write)


def write_array(path, array: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def _sidecar(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".fingerprint")


def save_array_artifact(path, array: np.ndarray, fp: str) -> None:
    """array to ``path`` plus ``path.fingerprint`` (fingerprint + content hash). The sidecar goes last, so
    a present sidecar always describes the array next to it."""
    _sidecar(path).unlink(missing_ok=True)
    write_array(path, array)
    write_json(_sidecar(path), {"fingerprint": fp, "sha256": array_digest(array)})


def load_array_artifact(path, fp: str) -> np.ndarray | None:
    """The array at ``path`` if it exists, its fingerprint is ``fp`` and its content is intact; else None."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        array = np.load(path, allow_pickle=False)
        intact = meta["fingerprint"] == fp and meta["sha256"] == array_digest(array)
    except Exception:  # missing, empty, truncated or foreign (EOFError, KeyError, ...): stale, so recomputed
        return None
    return array if intact else None


def save_checkpoint(path, state: dict, fp: str) -> None:
    atomic_write(path, lambda tmp: torch.save({**state, "fingerprint": fp}, tmp))


def load_checkpoint(path, fp: str | None) -> dict | None:
    """The checkpoint at ``path`` if it was written for fingerprint ``fp`` (None: for any); None if absent,
    foreign or broken."""
    if not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: recompute rather than crash
        return None
    if not isinstance(state, dict) or not {"fingerprint", "epoch", "epochs"} <= state.keys():
        return None
    return state if fp is None or state["fingerprint"] == fp else None
