"""Binary codes and relevance labels in the engine's packed form (numpy only, never torch).

Codes become rows of uint64 words (``ceil(q / 64)`` per item, zero-padded). Accepted forms, checked in this order:

* ``np.packbits`` bytes: a uint8 array with ``ceil(bits / 8)`` columns, ``bits`` given (padding bits must be 0);
* bool arrays: True is a 1 bit;
* arrays whose values are all 0 or 1: {0,1} codes;
* integer arrays of -1, 0 and 1 (±1 codes; 0 counts as +1, as sign(0) does);
* floating-point arrays (±1, real-valued network outputs): the sign, with sign(0) = +1.

Any other integer array is refused: its values are no code (np.packbits bytes without ``bits``, class ids) and
by sign would silently become +1 bits.

Labels: 1-D class ids (non-negative integers), one-hot rows, or multi-hot rows (a query is relevant to an item when
they share a label; an all-zero row is relevant to nothing). A numeric one-column or one-row matrix (N x 1 or
1 x N, how MATLAB and scipy.io.savemat store a vector) is read as 1-D class ids. One-hot pairs are turned into
class ids (the faster path); multi-hot rows become uint64 bitmaps.
"""
from __future__ import annotations

import os

import numpy as np

from shc._compiled import _engine

# The most threads an engine call may ask for. The engine cannot refuse a count: OpenMP fails to create tens of
# thousands of threads and the process dies (a segfault at 100000), so the count is checked before calling in.
MAX_THREADS = max(1024, os.cpu_count() or 1)


def _row_chunks(arr: np.ndarray):
    """(start, slice) of about 256K values each, for the numpy passes: their temporaries stay the size of L2 and
    are reused instead of freshly faulted in (numpy-packing 117K x 64 codes: 11.4 -> 4.7 ms), and a float input
    never needs a full-size temporary copy."""
    rows = max(1, (1 << 18) // arr.shape[1])
    return ((start, arr[start:start + rows]) for start in range(0, len(arr), rows))


def as_numpy(x, what: str) -> np.ndarray:
    """A numpy view of `x` (numpy array, list, or a torch tensor via duck typing: torch is never imported)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:  # bfloat16 and friends have no numpy dtype
            x = x.float().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise ValueError(f"{what}: cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise TypeError(f"{what}: object arrays are not supported (got dtype=object)")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{what}: expected a numeric or bool array, got dtype={arr.dtype}")
    return arr


def _check_finite(arr: np.ndarray, what: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{what}: contains NaN or infinite values")


def engine_threads(threads, what: str = "threads") -> int:
    """The `threads` argument of an engine call: 0 (the engine's default: OMP_NUM_THREADS or all cores) for None,
    else ``threads`` itself; a ValueError naming `what` unless it lies in 1..MAX_THREADS (and, for None, unless
    OMP_NUM_THREADS does). Every entry point that calls the engine checks its thread count here."""
    if threads is None:
        if _engine.default_threads() > MAX_THREADS:
            raise ValueError(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} asks for more than "
                             f"{MAX_THREADS} threads, the most the engine runs; set it lower or pass {what}")
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"{what} must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return int(threads)


def _words(bits: int) -> int:
    return (bits + 63) // 64


def _bytes_to_words(chunks, rows: int, bits: int) -> np.ndarray:
    """uint64 rows (zero-padded to whole words) from rows of packed bytes, given as (first row, bytes) chunks."""
    out = np.zeros((rows, _words(bits) * 8), dtype=np.uint8)
    for start, packed in chunks:
        out[start:start + len(packed), :packed.shape[1]] = packed
    return out.view(np.uint64)


def not_binary_codes(what: str, dtype: str, lo, hi) -> ValueError:
    """The error for integer codes with values beyond -1..1 (numpy and CUDA inputs alike): by sign they would
    all be +1, silently; uint8 ones are most likely np.packbits bytes."""
    fix = ("np.packbits bytes? pass the code length as bits=N (shc-eval --bits N)" if dtype == "uint8"
           else "for codes by sign pass floating-point values")
    return ValueError(f"{what}: {dtype} values from {lo} to {hi} are not binary codes (expected 0/1 or ±1); {fix}")


def _codes_are_bits(arr: np.ndarray, what: str) -> bool:
    """Whether the values are the bits themselves (all 0 or 1) rather than signs; a ValueError for an integer
    array with values beyond -1..1. The minimum and maximum decide most inputs without a temporary (±1 codes and
    network outputs have a negative value); only floats within [0, 1] need the full check."""
    if arr.dtype == bool:
        return True
    lo, hi = arr.min(), arr.max()
    if np.issubdtype(arr.dtype, np.integer):
        if lo < -1 or hi > 1:
            raise not_binary_codes(what, str(arr.dtype), lo, hi)
        return lo >= 0
    if lo < 0 or hi > 1:
        return False
    return all(bool(np.all((chunk == 0) | (chunk == 1))) for _, chunk in _row_chunks(arr))


# dtypes the engine packs itself, on all threads (native byte order: np.dtype equality includes it)
_ENGINE_PACK_DTYPES = frozenset(
    map(np.dtype, (bool, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float32, np.float64)))


def pack_rows(arr: np.ndarray, nonzero: bool, msb_first: bool) -> np.ndarray:
    """The bits of a 2-D array's values as uint64 rows: value != 0 (`nonzero`) or value >= 0; column c at bit
    c % 64 of word c // 64, or with `msb_first` in np.packbits' byte order (how codes are packed). The engine makes
    the pass where it takes the dtype (one pass, no temporaries: (a)'s codes and labels 8 -> 2 ms); numpy
    otherwise."""
    if arr.dtype in _ENGINE_PACK_DTYPES:
        return _engine.pack_rows(np.ascontiguousarray(arr), nonzero, msb_first, engine_threads(None))
    return _pack_rows_numpy(arr, nonzero, msb_first)


def _pack_rows_numpy(arr: np.ndarray, nonzero: bool, msb_first: bool) -> np.ndarray:
    def packed(chunk):
        return np.packbits((chunk != 0) if nonzero else (chunk >= 0), axis=1, bitorder="big" if msb_first else "little")

    chunks = ((start, packed(chunk)) for start, chunk in _row_chunks(arr))
    return _bytes_to_words(chunks, len(arr), arr.shape[1])


def pack_codes(codes, bits: int | None = None, *, what: str = "codes") -> tuple[np.ndarray, int]:
    """Pack binary codes into ``(uint64 array (n, ceil(q/64)), q)`` for the engine.

    `bits` is required for ``np.packbits`` input and otherwise, when given, must equal the number of columns.
    """
    arr = as_numpy(codes, what)
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits!r}")
        bits = int(bits)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (items x bits), got shape {arr.shape}")
    n, cols = arr.shape
    if n == 0 or cols == 0:
        raise ValueError(f"{what}: empty array of shape {arr.shape}")
    _check_finite(arr, what)

    packed_input = (bits is not None and arr.dtype == np.uint8 and cols == (bits + 7) // 8
                    and (cols != bits or int(arr.max()) > 1))
    q = bits if packed_input else cols
    if bits is not None and not packed_input and cols != bits:
        raise ValueError(f"{what}: bit-length mismatch: {cols} columns but bits={bits} "
                         f"(np.packbits input needs {(bits + 7) // 8} uint8 columns)")
    if not packed_input:  # {0,1} / bool: the bits themselves; anything else: the sign, sign(0) = +1
        return pack_rows(arr, nonzero=_codes_are_bits(arr, what), msb_first=True), q
    spare = cols * 8 - q
    if spare and (arr[:, -1] & np.uint8((1 << spare) - 1)).any():
        raise ValueError(f"{what}: packed bytes have bits set beyond bits={q}; is the bit count right?")
    return _bytes_to_words([(0, arr)], n, q), q


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of pack_codes: a bool array (n, bits)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint64)
    return np.unpackbits(packed.view(np.uint8), axis=1, count=bits).astype(bool)


# ---------------------------------------------------------------------------------------------------- labels

def is_label_vector(labels, rows: int) -> bool:
    """Whether 2-D labels (a numpy array or torch tensor) for `rows` codes are a vector of class ids as MATLAB and
    scipy.io.savemat store one: N x 1, or 1 x N (a 1 x N label matrix would need one code). A bool column stays a
    one-label matrix (bools are no class ids); a numeric one would mean the same but for its zeros (no label,
    relevant to nothing, instead of class 0), and binary class ids are by far the likelier meaning."""
    shape = tuple(labels.shape)
    return (len(shape) == 2 and not str(labels.dtype).endswith("bool")  # numpy's bool or torch.bool
            and (shape[1] == 1 or (shape[0] == 1 and rows != 1)))


def _label_array(labels, rows: int, what: str, codes_what: str) -> np.ndarray:
    arr = as_numpy(labels, what)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{what}: expected 1-D class ids or a 2-D label matrix, got shape {arr.shape}")
    if is_label_vector(arr, rows):
        arr = arr.reshape(-1)
    if len(arr) != rows:
        counted = f"{len(arr)} rows" if arr.ndim == 2 else f"{len(arr)} class ids"
        raise ValueError(f"{what}: {counted} but {rows} {codes_what}")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"{what}: label matrix has no columns")
    _check_finite(arr, what)
    if arr.ndim == 1:
        if arr.dtype == bool or (np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.floor(arr))):
            raise ValueError(f"{what}: class ids must be integers")
        if arr.size and arr.min() < 0:
            raise ValueError(f"{what}: negative class id {arr.min()}")
        return arr.astype(np.int64)
    if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{what}: a 2-D label matrix must hold only 0/1 (pass class ids as a 1-D array)")
    return arr.astype(bool, copy=False)


def _one_hot(ids: np.ndarray, classes: int, what: str) -> np.ndarray:
    if ids.size and ids.max() >= classes:
        raise ValueError(f"{what}: class id {ids.max()} does not fit the other side's {classes} label columns")
    out = np.zeros((ids.size, classes), dtype=bool)
    out[np.arange(ids.size), ids] = True
    return out


def prepare_labels(query_labels, db_labels, n_query: int, n_database: int) -> dict:
    """Engine keyword arguments for the relevance labels: either ``query_ids``/``db_ids`` (int32 class ids) or
    ``query_bitmaps``/``db_bitmaps`` (uint64 label bitmaps); the unused pair is None."""
    q = _label_array(query_labels, n_query, "query labels", "query codes")
    d = _label_array(db_labels, n_database, "database labels", "database codes")
    if q.ndim == 2 and d.ndim == 2 and q.shape[1] != d.shape[1]:
        raise ValueError(f"query labels have {q.shape[1]} columns but database labels {d.shape[1]}")
    if q.ndim != d.ndim:  # class ids on one side, a label matrix on the other
        if q.ndim == 1:
            q = _one_hot(q, d.shape[1], "query labels")
        else:
            d = _one_hot(d, q.shape[1], "database labels")
    if q.ndim == 2 and (q.sum(axis=1) == 1).all() and (d.sum(axis=1) == 1).all():
        q, d = q.argmax(axis=1).astype(np.int64), d.argmax(axis=1).astype(np.int64)  # one-hot: class ids
    if q.ndim == 1:
        if max(q.max(), d.max()) > np.iinfo(np.int32).max:  # renumber huge ids; only equality matters
            _, inverse = np.unique(np.concatenate([q, d]), return_inverse=True)
            q, d = inverse[:q.size], inverse[q.size:]
        return dict(query_ids=np.ascontiguousarray(q, dtype=np.int32), db_ids=np.ascontiguousarray(d, dtype=np.int32),
                    query_bitmaps=None, db_bitmaps=None)
    return dict(query_ids=None, db_ids=None, query_bitmaps=pack_rows(q, nonzero=True, msb_first=False),
                db_bitmaps=pack_rows(d, nonzero=True, msb_first=False))
