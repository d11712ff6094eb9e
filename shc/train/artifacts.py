"""Fingerprinted, atomically written stage artifacts.

Every artifact carries the fingerprint of everything it was computed from (options, seeds, data identity,
the content of upstream artifacts). A rerun reuses an artifact only when its fingerprint matches, so a stale
artifact is never used. Every output file of the package is written by :func:`atomic_write`: a temporary file in
the same directory, fsync'd, moved into place with os.replace, then the directory fsync'd — so a crash, a kill or
a power cut leaves either the old file or the new one, never half a file, and a full disk is one error naming
the file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shc.atomic import atomic_write, write_json_file, write_npy  # the one write path of every output
from shc.integrity import bytes_digest, file_digest

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
    write_json_file(path, obj, default=_jsonable)


def write_array(path, array: np.ndarray) -> None:
    write_npy(path, array)


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


class DamagedCheckpoint(ValueError):
    """A checkpoint's bytes are not those its digest sidecar recorded when it was written."""


def checkpoint_digest_path(path) -> Path:
    """The sidecar recording a checkpoint's sha256 (torch.load does not notice flipped bits in the weights)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path, state: dict, fp: str) -> None:
    """``state`` with its fingerprint to ``path``, its sha256 to the sidecar. The sidecar is written before the
    checkpoint replaces the old one and vouches for both, so a crash between the two leaves a checkpoint it
    vouches for; the old one is vouched for only if it matches the sidecar now."""
    path = Path(path)

    def write(tmp):
        torch.save({**state, "fingerprint": fp}, tmp)
        previous = _vouched_digest(path)
        write_json(checkpoint_digest_path(path), {"sha256": file_digest(tmp), "previous": previous})
    atomic_write(path, write)


def _vouched_digest(path) -> str | None:
    """The digest of the checkpoint at ``path`` if its sidecar vouches for it (or it has none), else None."""
    try:
        digest = file_digest(path)
    except OSError:
        return None
    recorded = _recorded_digests(path)
    return digest if recorded is None or digest in recorded else None  # None: an older shc's, taken as it is


def _recorded_digests(path) -> set | None:
    """The digests the sidecar vouches for; None without a sidecar (a checkpoint of an older shc)."""
    try:
        meta = json.loads(checkpoint_digest_path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return set()  # a damaged sidecar vouches for nothing
    return {meta.get("sha256"), meta.get("previous")} - {None} if isinstance(meta, dict) else set()


def read_checkpoint_bytes(path) -> bytes:
    """A checkpoint's bytes, checked against its digest sidecar (DamagedCheckpoint when they differ); an older
    shc's checkpoint without a sidecar is taken as it is."""
    data = Path(path).read_bytes()
    recorded = _recorded_digests(path)
    if recorded is not None and bytes_digest(data) not in recorded:
        raise DamagedCheckpoint(f"{path} is not the file that was written (its sha256 differs from the one "
                                f"recorded in {checkpoint_digest_path(path).name}: damaged since)")
    return data


def load_checkpoint(path, fp: str | None) -> dict | None:
    """The checkpoint at ``path`` if it was written for fingerprint ``fp`` (None: for any); None if absent,
    foreign or broken; DamagedCheckpoint when its bytes are not those written."""
    if not Path(path).is_file():
        return None
    data = read_checkpoint_bytes(path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: recompute rather than crash
        return None
    if not isinstance(state, dict) or not {"fingerprint", "epoch", "epochs"} <= state.keys():
        return None
    return state if fp is None or state["fingerprint"] == fp else None
