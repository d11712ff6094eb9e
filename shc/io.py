"""Load one array from the files people keep hash codes and labels in (numpy only at import time).

``load_array("file.ext[:key]")`` reads .npy, .npz, .pt/.pth (torch, imported lazily and loaded with
``weights_only=True``), .mat (scipy.io; MATLAB v7.3 files through h5py when installed), .txt and .csv.
``:key`` picks an array in .npz/.mat/.pt dictionaries; without it a file holding exactly one array is accepted.
Every failure is a ValueError (bad content) or an OSError (FileNotFoundError, IsADirectoryError), with a one-line
message naming the file.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".mat", ".txt", ".csv")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"codes.npz:train"`` -> ``("codes.npz", "train")``; a path that exists as given is never split."""
    spec = os.fspath(spec)
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, key = spec.rsplit(":", 1)
    return path, (key or None)


def _choose(names, key: str | None, path: str) -> str:
    """The entry to read: `key` when given, else the only entry (dunder names such as .mat headers ignored)."""
    names = [str(k) for k in names if not str(k).startswith("__")]
    if key is not None:
        if key not in names:
            raise ValueError(f"{path}: no array named {key!r} (available: {', '.join(names) or 'none'})")
        return key
    if len(names) != 1:
        raise ValueError(f"{path}: holds {len(names)} arrays ({', '.join(names)}); pick one with {path}:KEY")
    return names[0]


def _load_text(path: str) -> np.ndarray:
    with open(path) as f:
        head = f.read(4096)
    delimiter = "," if (path.lower().endswith(".csv") or "," in head) else None
    try:
        with warnings.catch_warnings():  # numpy warns of a table with no rows; told as the error below instead
            warnings.simplefilter("ignore", UserWarning)
            arr = np.loadtxt(path, delimiter=delimiter, ndmin=1)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric table ({exc})") from None
    if arr.size == 0:
        raise ValueError(f"{path}: holds no numbers (only blank or comment lines)")
    return arr


def _load_mat(path: str, key: str | None) -> np.ndarray:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        try:
            import h5py
        except ImportError:
            raise ValueError(f"{path}: MATLAB v7.3 file; install h5py to read it") from None
        with h5py.File(path, "r") as f:
            return np.asarray(f[_choose(f.keys(), key, path)]).T  # HDF5 stores MATLAB arrays transposed
    except (ValueError, TypeError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .mat file ({exc})") from None
    return np.asarray(data[_choose(data.keys(), key, path)])


def _load_torch(path: str, key: str | None) -> np.ndarray:
    import torch  # only this format needs torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled code, corrupt archive: refuse rather than execute it
        raise ValueError(f"{path}: cannot be loaded safely with torch.load(weights_only=True) ({exc})") from None
    if isinstance(obj, dict):
        obj = obj[_choose(obj.keys(), key, path)]
    elif key is not None:
        raise ValueError(f"{path}: holds a single {type(obj).__name__}, not a dict; drop ':{key}'")
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{path}: expected a tensor, got {type(obj).__name__}")
    obj = obj.detach().cpu()
    return (obj.float() if obj.dtype == torch.bfloat16 else obj).numpy()


# How each numpy format begins. np.load reads a file without one as a pickle, and refusing that would blame
# "pickled arrays" for a file that is simply not .npy / .npz.
_MAGIC = {".npy": (b"\x93NUMPY", "a .npy file"), ".npz": (b"PK", "a .npz (zip) file")}


def _check_magic(path: str, suffix: str) -> None:
    magic, kind = _MAGIC[suffix]
    with open(path, "rb") as f:
        if f.read(len(magic)) != magic:
            raise ValueError(f"{path}: not {kind} (its first bytes are not the format's header)")


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    if mmap:
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r")
        except OSError:  # a file system that cannot map files: read it instead
            pass
    return np.load(path, allow_pickle=False)


def load_array(spec: str, *, mmap: bool = False) -> np.ndarray:
    """The array stored at ``spec`` = ``path`` or ``path:key``. With ``mmap``, a .npy file is mapped read-only
    instead of read into memory (for one pass over it, as shc-eval makes: no copy, no page faults on a fresh
    buffer; (a)'s four files 13 -> 3 ms)."""
    path, key = split_spec(spec)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix or '(none)'} (use {', '.join(SUFFIXES)})")
    if key is not None and suffix in (".npy", ".txt", ".csv"):
        raise ValueError(f"{path}: {suffix} files hold one array; drop ':{key}'")
    try:
        if suffix in _MAGIC:
            _check_magic(path, suffix)
        if suffix == ".npy":
            arr = _load_npy(path, mmap)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arr = z[_choose(z.files, key, path)]
        elif suffix == ".mat":
            arr = _load_mat(path, key)
        elif suffix in (".pt", ".pth"):
            arr = _load_torch(path, key)
        else:
            arr = _load_text(path)
    except ValueError as exc:
        msg = str(exc)
        if "allow_pickle" in msg or "Object arrays" in msg or "Python objects" in msg:
            raise ValueError(f"{path}: object/pickled arrays are not supported") from None
        raise ValueError(msg if msg.startswith(path) else f"{path}: {msg}") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    if arr.dtype == object:
        raise ValueError(f"{path}: object/pickled arrays are not supported")
    return arr
