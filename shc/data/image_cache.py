"""The decoded-image cache: every image of a file dataset decoded and resized once, then memory-mapped.

A store is a directory holding ``pixels.u8`` (all images back to back, uint8 H x W x 3 each, shorter side
``resize_size``, aspect kept so random crops still range over the whole image), ``index.npy`` (int64
``(offset, height, width)`` per record; height 0 marks an image that could not be read) and ``meta.json``
(what it was built from, and why each unreadable image failed). Variable-size records with an offset index
are FFCV's raw layout; a fixed-size record format would either crop or pad, and litdata's serialised chunks
would decode on every read. A store is found by a key hashed from every image's (path, size, mtime), the
resize and the store format, so a changed image, list or transform never reuses stale pixels.

Building is crash-safe: records are decoded into ``KEY.partial/`` (its pixel file allocated in full from the
image headers, after a disk-space check, so a full disk is an error before decoding and never a SIGBUS inside
the map; resumed builds allocate again), each finished chunk is marked in ``done.npy``, and the directory is
renamed into place only when complete. An interrupted build resumes where it stopped; a lock file makes
concurrent builders (several ranks, two runs) wait for one.

A store is not trusted blindly: opening one checks that its files are there, parse, and agree (record count,
index bounds, pixel file size), and each chunk of CHUNK records carries a CRC-32 checked the first time one of
its records is read. A store failing on open is rebuilt (saying why); a chunk failing later stops the run with a
message naming the store, which is marked damaged so the next run rebuilds it.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shc.atomic import disk_full_error, fsync_path, human_size, write_npy, write_text
from shc.data.base import ImageReadError
from shc.data.decode import crop_window, decode_resized, image_size, resized_shape
from shc.progress import show_progress

CACHE_ENV = "SHC_CACHE_DIR"
STORE_FORMAT = 2        # bump when the layout or the pixels' meaning changes: old stores are then not found
CHUNK = 64              # records decoded between two marks in done.npy, and covered by one checksum
DISK_RESERVE = 64 << 20  # bytes a build leaves free for everything else
DAMAGED = "damaged"     # a file in a store whose checksum failed: the next open_or_build rebuilds it
_STORE_NAME = re.compile(r"^[0-9a-f]{32}(\.partial)?$")


class DamagedStoreError(OSError):
    """A store's files are missing, truncated or altered. The message names the store."""


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


MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))  # beyond this, starting the workers is all the work


def check_workers(workers, what: str = "workers") -> None:
    """ValueError unless ``workers`` is None (the default) or an integer from 0 to MAX_WORKERS."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 0 <= workers <= MAX_WORKERS):
        raise ValueError(f"{what} must be an integer from 0 to {MAX_WORKERS}, got {workers!r}")


class ImageStore:
    """A finished store, memory-mapped read-only; its files are checked on open (DamagedStoreError naming the
    store and the file at fault) and each chunk's checksum on its first read."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            meta = json.loads((self.path / "meta.json").read_text())
            self.paths: list[str] = list(meta["paths"])
            self.resize_size: int = int(meta["resize_size"])
            self.errors: dict[int, str] = {int(k): str(v) for k, v in meta["errors"].items()}
            self._checksums = np.asarray(meta["chunk_crc32"], np.int64)
            self.created: str = str(meta.get("created", ""))
            self.images_under: str = str(meta.get("images_under", ""))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._damaged(f"meta.json: {_why(exc)}") from None
        try:
            self.index = np.load(self.path / "index.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise self._damaged(f"index.npy: {_why(exc)}") from None
        if self.index.dtype != np.int64 or self.index.shape != (len(self.paths), 3):
            raise self._damaged(f"index.npy: {self.index.dtype} {self.index.shape} for {len(self.paths)} images")
        try:
            size = os.path.getsize(self.path / "pixels.u8")
        except OSError as exc:
            raise self._damaged(f"pixels.u8: {_why(exc)}") from None
        end = int((self.index[:, 0] + self.index[:, 1] * self.index[:, 2] * 3).max()) if len(self.index) else 0
        if (self.index < 0).any() or end > size:
            raise self._damaged(f"pixels.u8: {size:,} bytes, the index reaches byte {end:,}")
        if len(self._checksums) != -(-len(self.paths) // CHUNK):
            raise self._damaged(f"meta.json: {len(self._checksums)} checksums for {len(self.paths)} images")
        if (self.path / DAMAGED).exists():
            raise self._damaged((self.path / DAMAGED).read_text().strip())
        self.pixels = np.memmap(self.path / "pixels.u8", np.uint8, "r") if size else np.zeros(0, np.uint8)
        self._checked = np.zeros(len(self._checksums), bool)
        self._record = {os.path.abspath(p): i for i, p in enumerate(self.paths)}

    def _damaged(self, why: str) -> DamagedStoreError:
        return DamagedStoreError(f"image cache store {self.path} is damaged ({why}); it is rebuilt on the next "
                                 f"load, or remove it with shc-cache clear")

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
        if not self._checked[record // CHUNK]:
            self._check_chunk(record // CHUNK)
        offset, h, w = (int(v) for v in self.index[record])
        return self.pixels[offset:offset + h * w * 3].reshape(h, w, 3)

    def _check_chunk(self, chunk: int) -> None:
        """Compare the chunk's pixels with their checksum (once per process; threads may race: same answer)."""
        if _chunk_crc32(self.pixels, self.index, chunk) != self._checksums[chunk]:
            why = (f"pixels.u8: the pixels of records {chunk * CHUNK}..{min(len(self), (chunk + 1) * CHUNK) - 1} "
                   f"do not match their checksum")
            try:  # so that the next open_or_build rebuilds it rather than failing again mid-run
                write_text(self.path / DAMAGED, why + "\n")
            except OSError:
                pass
            raise self._damaged(why)
        self._checked[chunk] = True

    def crops(self, records, tops, lefts, flips, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """``(B, size, size, 3)`` windows: record ``records[b]`` from ``(tops[b], lefts[b])``, mirrored where
        ``flips[b]``. One copy per image straight out of the map; a flip only reads the window backwards."""
        out = np.empty((len(records), size, size, 3), np.uint8) if out is None else out
        for b, (r, top, left, flip) in enumerate(zip(records.tolist(), tops.tolist(), lefts.tolist(),
                                                     flips.tolist())):
            out[b] = crop_window(self.image(r), top, left, size, flip)
        return out


def list_stores(cache_dir: str | os.PathLike | None = None) -> list[ImageStore]:
    """The sound finished stores in ``cache_dir`` (default: :func:`default_cache_dir`), oldest first (a damaged
    store does not hide the others: :func:`scan_stores` names it)."""
    return scan_stores(cache_dir)[0]


def scan_stores(cache_dir: str | os.PathLike | None = None) -> tuple[list[ImageStore], dict[Path, str]]:
    """The sound finished stores in ``cache_dir``, oldest first, and the damaged ones ``{directory: why}``."""
    cache_dir = resolve_cache_dir(cache_dir)
    found, broken = [], {}
    for d in sorted(cache_dir.glob("*")):
        if d.is_dir() and _STORE_NAME.match(d.name) and not d.name.endswith(".partial"):
            try:
                found.append(ImageStore(d))
            except DamagedStoreError as exc:
                broken[d] = str(exc)
    return sorted(found, key=lambda s: s.created), broken


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Remove every store (broken ones too), interrupted build and lock in ``cache_dir``; returns the bytes
    freed."""
    cache_dir = resolve_cache_dir(cache_dir)
    freed = 0
    for entry in cache_dir.glob("*") if cache_dir.is_dir() else ():
        if entry.is_dir() and _STORE_NAME.match(entry.name):
            freed += sum(f.stat().st_blocks * 512 for f in entry.iterdir() if f.is_file())
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
    store = _open_sound(final)
    if store is not None:
        return store
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"image cache: cannot create {cache_dir}: {e.strerror}; choose another place with "
                      f"--image-cache DIR or turn the cache off with --image-cache off") from None
    with _lock(cache_dir / f"{key}.lock"):
        store = _open_sound(final, say_why=progress)  # another process may have built it while we waited
        if store is None:
            shutil.rmtree(final, ignore_errors=True)  # a damaged store (or one missing its meta.json) is replaced
            _build(final, paths, resize_size, workers or default_workers(), progress)
            store = ImageStore(final)
    return store


def _open_sound(final: Path, say_why: bool = False) -> ImageStore | None:
    """The store at ``final`` if it is there and sound; None to (re)build it (saying why, for a damaged one)."""
    if not final.exists():
        return None
    try:
        return ImageStore(final)
    except DamagedStoreError as exc:
        if say_why:
            print(f"{exc}: rebuilding it", file=sys.stderr)
        return None


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
    else:
        _allocate(partial / "pixels.u8", _total_bytes(index))  # a resumed build needs its room too
    done = np.load(partial / "done.npy", mmap_mode="r+")
    errors = _decode_into(partial, paths, resize_size, index, done, workers, progress)
    pixels = np.memmap(partial / "pixels.u8", np.uint8, "r") if _total_bytes(index) else np.zeros(0, np.uint8)
    with ThreadPoolExecutor(workers) as pool:  # zlib releases the GIL on large buffers
        checksums = list(pool.map(lambda c: _chunk_crc32(pixels, index, c), range(-(-len(paths) // CHUNK))))
    del pixels
    meta = {"format": STORE_FORMAT, "resize_size": resize_size, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "images_under": os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else "",
            "paths": paths, "errors": errors, "chunk_crc32": checksums}
    write_npy(partial / "index.npy", index)
    write_text(partial / "meta.json", json.dumps(meta))  # last: a store without it is not a store
    fsync_path(partial / "pixels.u8")
    os.replace(partial, final)
    fsync_path(final.parent)


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]


def _chunk_crc32(pixels: np.ndarray, index: np.ndarray, chunk: int) -> int:
    """CRC-32 of the pixels of records ``chunk * CHUNK ...`` (contiguous: records are laid out in order)."""
    rows = index[chunk * CHUNK:(chunk + 1) * CHUNK]
    start, end = int(rows[0, 0]), int(rows[-1, 0] + rows[-1, 1] * rows[-1, 2] * 3)
    return zlib.crc32(pixels[start:end]) if end > start else 0


def _allocate(path: Path, nbytes: int) -> None:
    """Give the file ``nbytes`` of real blocks now: writing a sparse file through a map on a full disk is a
    SIGBUS ("Bus error"), not an error that can be reported."""
    if not nbytes:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full_error(path, nbytes) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate: stay sparse
            raise
    finally:
        os.close(fd)


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
    if total + DISK_RESERVE > free:
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(f"image cache: {len(paths)} images need {human_size(total)} in {partial.parent}, plus "
                      f"{human_size(DISK_RESERVE)} kept free for everything else, but only {human_size(free)} are "
                      f"free; free some space, put the cache elsewhere with --image-cache DIR (image_cache=DIR), "
                      f"or turn it off with --image-cache off")
    if progress:
        print(f"image cache: decoding {len(paths):,} images once into {partial.parent} ({human_size(total)}); "
              f"later passes read them from there", file=sys.stderr)
    try:
        _allocate(partial / "pixels.u8", total)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    write_npy(partial / "done.npy", np.zeros(len(paths), bool))
    write_npy(partial / "plan.npy", index)  # last: its presence means the plan is complete
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
