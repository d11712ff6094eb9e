"""The decoded-image cache: every image of a file dataset decoded and resized once, then memory-mapped.

A store is a directory holding ``pixels.u8`` (all images back to back, uint8 H x W x 3 each, shorter side
``resize_size``, aspect kept so random crops still range over the whole image), ``index.npy`` (int64
``(offset, height, width)`` per record; height 0 marks an image that could not be read) and ``meta.json``
(what it was built from, and why each unreadable image failed). Variable-size records with an offset index
are FFCV's raw layout; a fixed-size record format would either crop or pad, and litdata's serialised chunks
would decode on every read. A store is found by a key hashed from every image's (path, size, mtime), the
resize and the store format, so a changed image, list or transform never reuses stale pixels.

Building is crash-safe: records are decoded into ``KEY.partial/`` (pre-sized from the image headers, after a
disk-space check), each finished chunk is marked in ``done.npy``, and the directory is renamed into place only
when complete. An interrupted build resumes where it stopped; a lock file makes concurrent builders (several
ranks, two runs) wait for one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shc.data.base import ImageReadError
from shc.data.decode import crop_window, decode_resized, image_size, resized_shape
from shc.progress import show_progress

CACHE_ENV = "SHC_CACHE_DIR"
STORE_FORMAT = 1        # bump when the layout or the pixels' meaning changes: old stores are then not found
CHUNK = 64              # records decoded between two marks in done.npy


def default_cache_dir() -> Path:
    """``$SHC_CACHE_DIR/images``, else ``~/.cache/shc/images``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "shc").expanduser() / "images"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` with ``~`` expanded, or :func:`default_cache_dir` for None."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def default_workers() -> int:
    """Data-loading workers: the cores this process may use (at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class ImageStore:
    """A finished store, memory-mapped read-only."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta = json.loads((self.path / "meta.json").read_text())
        self.paths: list[str] = meta["paths"]
        self.resize_size: int = meta["resize_size"]
        self.errors: dict[int, str] = {int(k): v for k, v in meta["errors"].items()}
        self.created: str = meta.get("created", "")
        self.images_under: str = meta.get("images_under", "")
        self.index = np.load(self.path / "index.npy")
        size = os.path.getsize(self.path / "pixels.u8")
        self.pixels = np.memmap(self.path / "pixels.u8", np.uint8, "r") if size else np.zeros(0, np.uint8)
        self._record = {os.path.abspath(p): i for i, p in enumerate(self.paths)}

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def nbytes(self) -> int:
        return _total_bytes(self.index)

    def records(self, paths) -> np.ndarray:
        """Record ids of ``paths`` (KeyError for a path the store does not hold)."""
        return np.fromiter((self._record[os.path.abspath(p)] for p in paths), np.int64, len(paths))

    def shapes(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.index[records, 1], self.index[records, 2]

    def image(self, record: int) -> np.ndarray:
        """One record as a read-only uint8 ``(H, W, 3)`` view of the map."""
        if record in self.errors:
            raise ImageReadError(self.errors[record])
        offset, h, w = (int(v) for v in self.index[record])
        return self.pixels[offset:offset + h * w * 3].reshape(h, w, 3)

    def crops(self, records, tops, lefts, flips, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """``(B, size, size, 3)`` windows: record ``records[b]`` from ``(tops[b], lefts[b])``, mirrored where
        ``flips[b]``. One copy per image straight out of the map; a flip only reads the window backwards."""
        out = np.empty((len(records), size, size, 3), np.uint8) if out is None else out
        for b, (r, top, left, flip) in enumerate(zip(records.tolist(), tops.tolist(), lefts.tolist(),
                                                     flips.tolist())):
            out[b] = crop_window(self.image(r), top, left, size, flip)
        return out


def list_stores(cache_dir: str | os.PathLike | None = None) -> list[ImageStore]:
    """The finished stores in ``cache_dir`` (default: :func:`default_cache_dir`), oldest first."""
    cache_dir = resolve_cache_dir(cache_dir)
    found = [ImageStore(d) for d in sorted(cache_dir.glob("*")) if (d / "meta.json").is_file()]
    return sorted(found, key=lambda s: s.created)


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Remove every store, interrupted build and lock in ``cache_dir``; returns the bytes freed."""
    cache_dir = resolve_cache_dir(cache_dir)
    freed = 0
    for entry in cache_dir.glob("*") if cache_dir.is_dir() else ():
        if entry.is_dir() and ((entry / "meta.json").is_file() or entry.name.endswith(".partial")):
            freed += sum(f.stat().st_blocks * 512 for f in entry.iterdir())
            shutil.rmtree(entry)
        elif entry.suffix == ".lock":
            entry.unlink()
    return freed


def store_key(paths: list[str], resize_size: int) -> str:
    """What a store's pixels depend on: each file's identity, the resize and the format (a sha256)."""
    entries = []
    for p in paths:
        try:
            st = os.stat(p)
            entries.append((os.path.abspath(p), st.st_size, st.st_mtime_ns))
        except OSError:
            entries.append((os.path.abspath(p), None, None))  # missing now: a later, present file gets another key
    blob = json.dumps({"format": STORE_FORMAT, "resize_size": int(resize_size), "entries": entries})
    return hashlib.sha256(blob.encode()).hexdigest()


def open_or_build(paths: list[str], resize_size: int, cache_dir: str | os.PathLike | None = None, *,
                  workers: int | None = None, progress: bool = True) -> ImageStore:
    """The store of ``paths`` (unique, absolute or as the lists give them) in ``cache_dir``, built if needed."""
    cache_dir = resolve_cache_dir(cache_dir)
    key = store_key(paths, resize_size)[:32]
    final = cache_dir / key
    if (final / "meta.json").is_file():
        return ImageStore(final)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"image cache: cannot create {cache_dir}: {e.strerror}; choose another place with "
                      f"--image-cache DIR or turn the cache off with --image-cache off") from None
    with _lock(cache_dir / f"{key}.lock"):
        if not (final / "meta.json").is_file():  # another process may have built it while we waited
            _build(final, paths, resize_size, workers or default_workers(), progress)
    return ImageStore(final)


@contextmanager
def _lock(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(final: Path, paths: list[str], resize_size: int, workers: int, progress: bool) -> None:
    partial = final.with_name(final.name + ".partial")
    index = _resume_index(partial, len(paths))
    if index is None:
        shutil.rmtree(partial, ignore_errors=True)
        index = _plan(partial, paths, resize_size, workers, progress)
    done = np.load(partial / "done.npy", mmap_mode="r+")
    errors = _decode_into(partial, paths, resize_size, index, done, workers, progress)
    meta = {"format": STORE_FORMAT, "resize_size": resize_size, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "images_under": os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else "",
            "paths": paths, "errors": errors}
    (partial / "meta.json").write_text(json.dumps(meta))
    np.save(partial / "index.npy", index)
    os.replace(partial, final)


def _resume_index(partial: Path, n: int) -> np.ndarray | None:
    """The planned index of an interrupted build of the same key, or None to start afresh."""
    try:
        index = np.load(partial / "plan.npy")
        done = np.load(partial / "done.npy", mmap_mode="r")
        pixels = os.path.getsize(partial / "pixels.u8")
    except (OSError, ValueError):
        return None
    if index.shape != (n, 3) or done.shape != (n,) or pixels != _total_bytes(index):
        return None
    return index


def _total_bytes(index: np.ndarray) -> int:
    return int((index[:, 1] * index[:, 2]).sum() * 3)


def _plan(partial: Path, paths: list[str], resize_size: int, workers: int, progress: bool) -> np.ndarray:
    """Read every header, lay the records out, check the disk has room, pre-size the files."""
    def shape(p):
        try:
            return resized_shape(*image_size(p), resize_size)
        except ImageReadError:
            return (0, 0)  # decoding reports why, below
    with ThreadPoolExecutor(workers) as pool:
        shapes = np.array(list(show_progress(pool.map(shape, paths, chunksize=CHUNK), total=len(paths),
                                             desc="image cache: reading headers", unit="img", enabled=progress)),
                          np.int64).reshape(-1, 2)
    sizes = shapes[:, 0] * shapes[:, 1] * 3
    index = np.column_stack([np.cumsum(sizes) - sizes, shapes]).astype(np.int64)
    total = int(sizes.sum())
    partial.mkdir(parents=True)
    free = shutil.disk_usage(partial).free
    if total > free - (64 << 20):  # keep some room for everything else
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(f"image cache: {len(paths)} images need {human_size(total)} in {partial.parent} but "
                      f"only {human_size(free)} are free; free some space, put the cache elsewhere with "
                      f"--image-cache DIR (image_cache=DIR), or turn it off with --image-cache off")
    if progress:
        print(f"image cache: decoding {len(paths):,} images once into {partial.parent} ({human_size(total)}); "
              f"later passes read them from there", file=sys.stderr)
    with open(partial / "pixels.u8", "wb") as f:
        f.truncate(total)  # sparse until written
    np.save(partial / "done.npy", np.zeros(len(paths), bool))
    np.save(partial / "plan.npy", index)  # last: its presence means the plan is complete
    return index


def _decode_into(partial: Path, paths, resize_size: int, index: np.ndarray, done: np.ndarray, workers: int,
                 progress: bool) -> dict[str, str]:
    """Decode every record not yet done into the pre-sized pixel file; returns {record: why unreadable}."""
    total = _total_bytes(index)
    pixels = np.memmap(partial / "pixels.u8", np.uint8, "r+") if total else None
    errors: dict[str, str] = {}
    todo = np.flatnonzero(~done)
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]

    def decode_chunk(chunk):
        failed = {}
        for r in chunk.tolist():
            offset, h, w = (int(v) for v in index[r])
            try:
                if h == 0:
                    image_size(paths[r])  # the header was unreadable when planned: say why
                    raise ImageReadError(f"cannot read image {paths[r]}: header changed while caching")
                pixels[offset:offset + h * w * 3] = decode_resized(paths[r], resize_size, (h, w)).reshape(-1)
            except ImageReadError as e:
                failed[r] = str(e)
        return chunk, failed

    with ThreadPoolExecutor(workers) as pool:
        for chunk, failed in show_progress(pool.map(decode_chunk, chunks), total=len(chunks), enabled=progress,
                                           desc=f"image cache: decoding {len(todo):,} images", unit="chunk"):
            errors.update({str(r): why for r, why in failed.items()})
            ok = np.setdiff1d(chunk, list(failed), assume_unique=True)
            done[ok] = True  # failures stay not-done: a resumed build retries them (and learns why again)
    if pixels is not None:
        pixels.flush()
    done.flush()
    for r in errors:
        index[int(r), 1:] = 0
    return errors


def human_size(nbytes: int) -> str:
    """Bytes for messages: GB, MB or kB, whichever reads best."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= 0.1 * scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"
