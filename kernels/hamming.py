"""GPU Hamming ranking over packed codes: per-query distance histograms and top-k.

Codes are rows of 64-bit words (int64 tensors holding the raw bits; any q, unused high bits zero).
Two kernels, both tiled [QB queries × BLOCK_N database items] with the code words on a third axis:

* `_buckets_kernel` — per query the histogram n[d] of distances and r[d] of relevant items among
  them (d = 0..q). Relevance is a class-id compare or a non-empty AND of label bitmaps. Each tile is
  reduced with one `tl.histogram` over the key (query slot, relevant, distance); programs own a
  slice of the database and add their counts atomically (integers: exact, order-free).
* `_select_kernel` — top-k in (distance, index) order: from the histogram, all items closer than the
  cut-off distance d* plus the first k − N(<d*) items at d* in index order; a program walks the
  database in index order keeping running counts, so the selection is exactly numpy's stable argsort.

Popcount: shifts and masks (what the interpreter runs); on NVIDIA GPUs PTX `popc.b64`, chosen at trace
time through a constexpr.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _popcount64(x, USE_PTX: tl.constexpr):
    """Bit count of each uint64 element, as int32."""
    if USE_PTX:
        return tl.inline_asm_elementwise("popc.b64 $0, $1;", "=r,l", [x], dtype=tl.int32, is_pure=True, pack=1)
    else:
        x = x - ((x >> 1) & 0x5555555555555555)
        x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
        return ((x * 0x0101010101010101) >> 56).to(tl.int32)


@triton.jit
def _load_rows(ptr, rows, row_ok, width, BLOCK_W: tl.constexpr):
    """rows × width words of a row-major int64 table as a [len(rows), BLOCK_W] tile (zero-padded)."""
    w = tl.arange(0, BLOCK_W)
    return tl.load(ptr + rows.to(tl.int64)[:, None] * width + w[None, :], mask=row_ok[:, None] & (w < width)[None, :], other=0)


@triton.jit
def _distances(q_words, db_ptr, offs, db_ok, W, BLOCK_W: tl.constexpr, USE_PTX: tl.constexpr):
    """[QB, BLOCK_N] Hamming distances between the query tile and database rows `offs`."""
    db_words = _load_rows(db_ptr, offs, db_ok, W, BLOCK_W)
    x = (q_words[:, None, :] ^ db_words[None, :, :]).to(tl.uint64, bitcast=True)
    return tl.sum(_popcount64(x, USE_PTX), axis=2)


@triton.jit
def _relevance(q_rel, db_rel_ptr, offs, db_ok, L, MULTI: tl.constexpr, BLOCK_L: tl.constexpr):
    """[QB, BLOCK_N] relevance: same class id, or label bitmaps sharing a bit."""
    if MULTI:
        db_labels = _load_rows(db_rel_ptr, offs, db_ok, L, BLOCK_L)
        shared = (q_rel[:, None, :] & db_labels[None, :, :]) != 0
        return tl.max(shared.to(tl.int32), axis=2) > 0
    else:
        db_class = tl.load(db_rel_ptr + offs, mask=db_ok, other=-1)
        return q_rel[:, None] == db_class[None, :]


@triton.jit
def _load_query_relevance(q_rel_ptr, q_rows, q_ok, L, MULTI: tl.constexpr, BLOCK_L: tl.constexpr):
    if MULTI:
        return _load_rows(q_rel_ptr, q_rows, q_ok, L, BLOCK_L)
    else:
        return tl.load(q_rel_ptr + q_rows, mask=q_ok, other=-2)


@triton.jit
def _buckets_kernel(q_ptr, db_ptr, q_rel_ptr, db_rel_ptr, n_ptr, r_ptr, Q, N, W, L, n_buckets, chunk,
                    HAS_REL: tl.constexpr, MULTI: tl.constexpr, QB: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_W: tl.constexpr, BLOCK_L: tl.constexpr, NUM_D: tl.constexpr, USE_PTX: tl.constexpr):
    q_rows = tl.program_id(0).to(tl.int64) * QB + tl.arange(0, QB)
    q_ok = q_rows < Q
    q_words = _load_rows(q_ptr, q_rows, q_ok, W, BLOCK_W)
    if HAS_REL:
        q_rel = _load_query_relevance(q_rel_ptr, q_rows, q_ok, L, MULTI, BLOCK_L)
    lo = tl.program_id(1).to(tl.int64) * chunk
    hi = tl.minimum(lo + chunk, N)
    # key = (query slot, relevant, distance): bins [QB, 2, NUM_D] flattened
    slot = tl.arange(0, QB)[:, None] * (2 * NUM_D)
    hist = tl.zeros([QB * 2 * NUM_D], dtype=tl.int32)
    for start in range(lo, hi, BLOCK_N):
        offs = start + tl.arange(0, BLOCK_N)
        db_ok = offs < hi
        key = slot + _distances(q_words, db_ptr, offs, db_ok, W, BLOCK_W, USE_PTX)
        if HAS_REL:
            key += NUM_D * _relevance(q_rel, db_rel_ptr, offs, db_ok, L, MULTI, BLOCK_L).to(tl.int32)
        valid = q_ok[:, None] & db_ok[None, :]
        hist += tl.histogram(tl.reshape(key, [QB * BLOCK_N]), QB * 2 * NUM_D,
                             mask=tl.reshape(valid, [QB * BLOCK_N]))
    hist = tl.reshape(hist, [QB, 2, NUM_D])
    is_rel = tl.arange(0, 2)[None, :, None] == 1
    d = tl.arange(0, NUM_D)
    out = q_rows[:, None] * n_buckets + d[None, :]
    out_ok = q_ok[:, None] & (d < n_buckets)[None, :]
    tl.atomic_add(n_ptr + out, tl.sum(hist, axis=1).to(tl.int64), mask=out_ok)
    if HAS_REL:
        tl.atomic_add(r_ptr + out, tl.sum(tl.where(is_rel, hist, 0), axis=1).to(tl.int64), mask=out_ok)


@triton.jit
def _select_kernel(q_ptr, db_ptr, cut_ptr, take_ptr, idx_ptr, dist_ptr, Q, N, W, K,
                   QB: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, USE_PTX: tl.constexpr):
    # counts and ranks in int32 (the launcher checks N < 2^31); only the output offset needs int64
    q_rows = tl.program_id(0).to(tl.int64) * QB + tl.arange(0, QB)
    q_ok = q_rows < Q
    q_words = _load_rows(q_ptr, q_rows, q_ok, W, BLOCK_W)
    cut = tl.load(cut_ptr + q_rows, mask=q_ok, other=-1).to(tl.int32)[:, None]  # cut-off distance d*
    take_at_cut = tl.load(take_ptr + q_rows, mask=q_ok, other=0).to(tl.int32)[:, None]  # items at d* to keep
    out_row = q_rows[:, None] * K
    written = tl.zeros([QB], dtype=tl.int32)
    seen_at_cut = tl.zeros([QB], dtype=tl.int32)
    for start in range(0, N, BLOCK_N):
        offs = start + tl.arange(0, BLOCK_N)
        db_ok = offs < N
        d = _distances(q_words, db_ptr, offs, db_ok, W, BLOCK_W, USE_PTX)
        valid = q_ok[:, None] & db_ok[None, :]
        at_cut = (valid & (d == cut)).to(tl.int32)
        below = valid & (d < cut)
        n_at_cut = tl.sum(at_cut, axis=1)
        # most tiles hold no item of any query's top-k: skip the scans there
        if tl.sum(n_at_cut + tl.sum(below.to(tl.int32), axis=1), axis=0) > 0:
            rank_at_cut = seen_at_cut[:, None] + tl.cumsum(at_cut, axis=1) - at_cut
            take = (below | ((at_cut != 0) & (rank_at_cut < take_at_cut))).to(tl.int32)
            pos = out_row + (written[:, None] + tl.cumsum(take, axis=1) - take)
            tl.store(idx_ptr + pos, offs.to(tl.int64)[None, :] + tl.zeros_like(pos), mask=take != 0)
            tl.store(dist_ptr + pos, d, mask=take != 0)
            written += tl.sum(take, axis=1)
        seen_at_cut += n_at_cut


def _use_ptx(device: torch.device) -> bool:
    return not _INTERPRET and device.type == "cuda" and torch.version.hip is None


def _programs_wanted(device: torch.device) -> int:
    if _INTERPRET or device.type != "cuda":
        return 1
    return 8 * torch.cuda.get_device_properties(device).multi_processor_count


def _tiles(W: int, queries_per_program: int | None, block_n: int | None, gpu_words_per_tile: int) -> tuple[int, int]:
    """(queries per program, database items per tile). The interpreter pays per program and per op, not per
    element, so it gets big tiles; on the GPU one query per program keeps the histogram small, and the tile
    holds gpu_words_per_tile code words (measured on an H200: 2048 for the histograms, 256 for the top-k)."""
    qb = queries_per_program or (16 if _INTERPRET else 1)
    block_n = block_n or (512 if _INTERPRET else max(16, gpu_words_per_tile // triton.next_power_of_2(W)))
    return qb, block_n


def _check_packed(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.int64 or x.dim() != 2:
        raise TypeError(f"{name} must be a 2-D int64 tensor of packed 64-bit words")


def bucket_histograms(query_words: torch.Tensor, db_words: torch.Tensor, bits: int,
                      query_rel: torch.Tensor | None = None, db_rel: torch.Tensor | None = None,
                      queries_per_program: int | None = None,
                      block_n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query histograms n[Q, bits+1] (items at distance d) and r[Q, bits+1] (relevant ones), int64.

    query_words/db_words: int64 [*, W] packed codes (W = ceil(bits/64)). Relevance: class ids (1-D int) or
    packed label bitmaps (2-D int64 [*, L]) for both sides, or None for n only (r is then all zero).
    """
    _check_packed("query_words", query_words)
    _check_packed("db_words", db_words)
    if query_words.shape[1] != db_words.shape[1] or not 1 <= bits <= 64 * db_words.shape[1]:
        raise ValueError(f"query/db words {query_words.shape[1]}/{db_words.shape[1]} do not hold {bits} bits")
    Q, W = query_words.shape
    N = db_words.shape[0]
    dev = query_words.device
    n = torch.zeros((Q, bits + 1), dtype=torch.int64, device=dev)
    r = torch.zeros_like(n)
    if Q == 0 or N == 0:
        return n, r
    has_rel = query_rel is not None
    multi = has_rel and query_rel.dim() == 2
    if has_rel:
        if db_rel is None or db_rel.dim() != query_rel.dim():
            raise ValueError("query and database relevance must both be class ids or both label bitmaps")
        if not multi:
            query_rel, db_rel = query_rel.to(torch.int32), db_rel.to(torch.int32)
    L = query_rel.shape[1] if multi else 1
    num_d = max(16, triton.next_power_of_2(bits + 1))  # >= 32 histogram bins: at least one per lane of a warp
    qb, block_n = _tiles(W, queries_per_program, block_n, 2048)
    q_programs = triton.cdiv(Q, qb)
    splits = max(1, min(triton.cdiv(N, block_n), triton.cdiv(_programs_wanted(dev), q_programs)))
    chunk = triton.cdiv(triton.cdiv(N, splits), block_n) * block_n
    splits = triton.cdiv(N, chunk)
    rel_q = query_rel if has_rel else query_words
    rel_db = db_rel if has_rel else db_words
    _buckets_kernel[(q_programs, splits)](
        query_words.contiguous(), db_words.contiguous(), rel_q.contiguous(), rel_db.contiguous(), n, r,
        Q, N, W, L, bits + 1, chunk, HAS_REL=has_rel, MULTI=multi, QB=qb, BLOCK_N=block_n,
        BLOCK_W=triton.next_power_of_2(W), BLOCK_L=triton.next_power_of_2(L), NUM_D=num_d,
        USE_PTX=_use_ptx(dev))
    return n, r


def cutoff(n: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut-off distance d* of the top-k per query and how many items at d* belong to it (k ≤ N)."""
    cum = n.cumsum(1)
    cut = (cum < k).sum(1)
    before = torch.where(cut > 0, cum.gather(1, (cut - 1).clamp(min=0)[:, None])[:, 0], 0)
    return cut, k - before


def _select_in_index_order(query_words, db_words, bits, k, n, queries_per_program, block_n):
    """The top-k items of every query (k ≤ N), in database-index order: (indices int64, distances int32)."""
    Q, W = query_words.shape
    N = db_words.shape[0]
    dev = query_words.device
    idx = torch.empty((Q, k), dtype=torch.int64, device=dev)
    dist = torch.empty((Q, k), dtype=torch.int32, device=dev)
    if Q == 0:
        return idx, dist
    if N >= 2 ** 31:
        raise ValueError(f"the GPU top-k counts in int32: at most 2^31 - 1 database items, got {N}")
    cut, take = cutoff(n, k)
    qb, block_n = _tiles(W, queries_per_program, block_n, 256)
    _select_kernel[(triton.cdiv(Q, qb),)](
        query_words.contiguous(), db_words.contiguous(), cut.contiguous(), take.contiguous(), idx, dist,
        Q, N, W, k, QB=qb, BLOCK_N=block_n, BLOCK_W=triton.next_power_of_2(W), USE_PTX=_use_ptx(dev))
    return idx, dist


def topk_search(query_words: torch.Tensor, db_words: torch.Tensor, bits: int, k: int,
                n: torch.Tensor | None = None, queries_per_program: int | None = None,
                block_n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k database items per query by (distance, index): (indices int64 Q×k, distances int32 Q×k).

    k > N is clamped to N. `n` (the distance histogram) is computed when not given.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n is None:
        n, _ = bucket_histograms(query_words, db_words, bits, queries_per_program=queries_per_program,
                                 block_n=block_n)
    k = min(k, db_words.shape[0])
    idx, dist = _select_in_index_order(query_words, db_words, bits, k, n, queries_per_program, block_n)
    # selected in index order: a stable sort by distance gives (distance, index) order
    dist, order = torch.sort(dist, dim=1, stable=True)
    return idx.gather(1, order), dist


# ---- torch-side glue: packing, search and evaluate on CUDA tensors ---------------------------------------------

def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a [n, q] 0/1 (or bool) tensor into int64 words [n, ceil(q/64)], bit j of a row in word j // 64."""
    n, q = bits.shape
    W = triton.cdiv(q, 64)
    padded = torch.zeros((n, W * 64), dtype=torch.int64, device=bits.device)
    padded[:, :q] = bits.to(torch.int64)
    shifts = torch.arange(64, device=bits.device, dtype=torch.int64)
    # distinct powers of two: the sum is the OR, and it wraps correctly into bit 63
    return (padded.view(n, W, 64) << shifts).sum(-1)


def code_bits(codes: torch.Tensor, what: str = "codes") -> torch.Tensor:
    """Binary view of codes: bool and {0,1} as they are, anything else by sign (sign(0) = +1); integer values
    beyond -1..1 are refused, as for numpy codes."""
    from shc.codes import not_binary_codes
    if codes.dim() != 2 or codes.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D tensor, got shape {tuple(codes.shape)}")
    if codes.dtype == torch.bool:
        return codes
    if codes.is_floating_point() and not torch.isfinite(codes).all():
        raise ValueError(f"{what} contain NaN or inf")
    if not codes.is_floating_point():
        lo, hi = int(codes.min()), int(codes.max())
        if lo < -1 or hi > 1:
            raise not_binary_codes(what, str(codes.dtype).removeprefix("torch."), lo, hi)
    if bool(((codes == 0) | (codes == 1)).all()):
        return codes == 1
    return codes >= 0


def label_relevance(labels: torch.Tensor) -> torch.Tensor:
    """Class ids (1-D, int32) or packed label bitmaps (2-D one-/multi-hot rows -> int64 words)."""
    if labels.dim() == 1:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"class ids must be integers, got {labels.dtype}")
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError("class ids must be non-negative")
        return labels.to(torch.int32)
    if labels.dim() == 2:
        return pack_bits(labels != 0)
    raise ValueError(f"labels must be 1-D class ids or 2-D label rows, got {labels.dim()}-D")


def search_cuda(query_codes: torch.Tensor, db_codes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """shc.search on device tensors: (indices int64 Q×k, distances int32 Q×k), ties by index."""
    q_bits, db_bits = code_bits(query_codes, "query codes"), code_bits(db_codes, "database codes")
    if q_bits.shape[1] != db_bits.shape[1]:
        raise ValueError(f"query codes have {q_bits.shape[1]} bits, database codes {db_bits.shape[1]}")
    return topk_search(pack_bits(q_bits), pack_bits(db_bits), q_bits.shape[1], k)


def relevance_of(q_rel: torch.Tensor, db_rel: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """[Q, K] relevance of database items idx[i, :] to query i."""
    if q_rel.dim() == 1:
        return db_rel[idx] == q_rel[:, None]
    return (db_rel[idx] & q_rel[:, None, :]).ne(0).any(-1)


def index_entries(query_words, db_words, bits, q_rel, db_rel, n, k) -> torch.Tensor:
    """The top-k of every query in database-index order as entries (distance << 1 | relevant), int32 Q×k.

    This is exactly what the engine's index-order walk reads (its walk skips every item past the largest
    cut-off, and these are the items before it), so `index` ties are computed by the engine's own code.
    """
    idx, dist = _select_in_index_order(query_words, db_words, bits, min(k, db_words.shape[0]), n, None, None)
    return (dist << 1) | relevance_of(q_rel, db_rel, idx).to(torch.int32)
