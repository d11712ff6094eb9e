// Fused AVX2 key kernels for 64-bit codes: distance, relevance and key of 16 database items per step, without the
// intermediate distance array of the generic path (Hamming kernel, then make_keys). Keys are built in 16-bit
// lanes as (distance << 1) + relevant, the doubled distance read straight off a doubled popcount table, and
// stored as bytes (q <= 64).
#include "scan.h"
#include "popcount_avx2.h"

namespace shc {

#if defined(__x86_64__) || defined(__i386__)

namespace {

SHC_AVX2 inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Sixteen 16-bit lanes from four vectors of four 64-bit lanes (a, b, c, d: items 0-3, 4-7, 8-11, 12-15), each lane
// holding a value in [0, 2^15) or a 0 / -1 mask: two signed packs halve the width twice, one permute restores order.
SHC_AVX2 inline __m256i pack16(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi32(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// distance << 1 of 4 items, one per 64-bit lane
SHC_AVX2 inline __m256i doubled_distances4(__m256i query, const uint64_t* codes) {
    return popcount_lanes<2>(_mm256_xor_si256(query, load(codes)));
}

// distance << 1 of 16 items, as 16-bit lanes in item order
SHC_AVX2 inline __m256i doubled_distances16(__m256i query, const uint64_t* codes) {
    return pack16(doubled_distances4(query, codes), doubled_distances4(query, codes + 4),
                  doubled_distances4(query, codes + 8), doubled_distances4(query, codes + 12));
}

// the v-th vector of label rows, AND the query's bitmap
SHC_AVX2 inline __m256i masked(const uint64_t* rows, size_t v, __m256i query_bitmap) {
    return _mm256_and_si256(load(rows + 4 * v), query_bitmap);
}

// -1 per 16-bit lane (items 0..15, in order) where the item's label row (`words` uint64) shares no label with
// the query. The masked rows are narrowed with signed saturating packs, which keep every nonzero 32- or 16-bit
// lane nonzero, until each item is one lane; one compare with zero then decides all of them.
template <size_t words>
SHC_AVX2 inline __m256i unrelated16(const uint64_t* rows, __m256i qb) {
    const __m256i zero = _mm256_setzero_si256();
    if constexpr (words == 1) {
        // vector v holds items 4v..4v+3 as two 32-bit lanes each; two packs leave two bytes per item
        const __m256i x = _mm256_packs_epi16(_mm256_packs_epi32(masked(rows, 0, qb), masked(rows, 1, qb)),
                                             _mm256_packs_epi32(masked(rows, 2, qb), masked(rows, 3, qb)));
        // 16-bit lanes in the order (0, 1, 4, 5, 8, 9, 12, 13 | 2, 3, 6, 7, 10, 11, 14, 15) as 64-bit units: fix it
        return _mm256_permutevar8x32_epi32(_mm256_cmpeq_epi16(x, zero), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    } else {
        // vector v holds items 2v, 2v + 1 as four 32-bit lanes each; three packs leave four bytes per item
        const __m256i x0 = _mm256_packs_epi16(_mm256_packs_epi32(masked(rows, 0, qb), masked(rows, 1, qb)),
                                              _mm256_packs_epi32(masked(rows, 2, qb), masked(rows, 3, qb)));
        const __m256i x1 = _mm256_packs_epi16(_mm256_packs_epi32(masked(rows, 4, qb), masked(rows, 5, qb)),
                                              _mm256_packs_epi32(masked(rows, 6, qb), masked(rows, 7, qb)));
        // items as 16-bit lanes (0, 2, 4, 6, 8, 10, 12, 14 | 1, 3, ..., 15): interleave the two halves
        const __m256i z = _mm256_packs_epi32(_mm256_cmpeq_epi32(x0, zero), _mm256_cmpeq_epi32(x1, zero));
        const __m256i halves = _mm256_permute4x64_epi64(z, _MM_SHUFFLE(3, 1, 2, 0));
        const __m256i interleave = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,  //
                                                    0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
        return _mm256_shuffle_epi8(halves, interleave);
    }
}

// the pending keys [i, i + 16), if there are that many; after the vector loop, the rest from `done` on
inline void count_pending16(const PendingKeys& pending, size_t i) {
    if (i + 16 <= pending.count) count_keys(pending.keys, i, i + 16, pending.hist, pending.width);
}

inline void count_pending_rest(const PendingKeys& pending, size_t done) {
    if (done < pending.count) count_keys(pending.keys, done, pending.count, pending.hist, pending.width);
}

inline uint8_t scalar_key(uint64_t query, uint64_t code, bool relevant) {
    return make_key<uint8_t>(unsigned(__builtin_popcountll(query ^ code)), relevant);
}

// 16 keys held in 16-bit lanes (values < 256), stored as bytes
SHC_AVX2 inline void store16(uint8_t* keys, __m256i key) {
    const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(key, key), _MM_SHUFFLE(3, 1, 2, 0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(keys), _mm256_castsi256_si128(bytes));
}

// relevant = same class id
SHC_AVX2 void keys_ids(const uint64_t* query_codes, const Labels& query_labels, size_t qi, const Database& db,
                       size_t begin, size_t count, uint8_t* keys,
                       const PendingKeys& pending) {
    const uint64_t q = query_codes[qi];
    const int32_t qid = query_labels.ids[qi];
    const uint64_t* codes = db.codes + begin;
    const int32_t* ids = db.labels.ids + begin;
    const __m256i qv = _mm256_set1_epi64x(static_cast<long long>(q)), qidv = _mm256_set1_epi32(qid);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        // -1 where relevant; the pack interleaves 128-bit halves (items 0-3, 8-11 | 4-7, 12-15), vpermq undoes it
        const __m256i rel = _mm256_permute4x64_epi64(
            _mm256_packs_epi32(_mm256_cmpeq_epi32(load(ids + i), qidv), _mm256_cmpeq_epi32(load(ids + i + 8), qidv)),
            _MM_SHUFFLE(3, 1, 2, 0));
        store16(keys + i, _mm256_sub_epi16(doubled_distances16(qv, codes + i), rel));
        count_pending16(pending, i);
    }
    count_pending_rest(pending, i);  // i: past the last full group of 16
    for (; i < count; ++i) keys[i] = scalar_key(q, codes[i], ids[i] == qid);
}

// relevant = the label bitmaps (words = 1 or 2) share a bit
template <size_t words>
SHC_AVX2 void keys_bitmaps(const uint64_t* query_codes, const Labels& query_labels, size_t qi, const Database& db,
                           size_t begin, size_t count, uint8_t* keys,
                       const PendingKeys& pending) {
    const uint64_t q = query_codes[qi];
    const uint64_t* qb = query_labels.bitmaps + qi * words;
    const uint64_t* codes = db.codes + begin;
    const uint64_t* rows = db.labels.bitmaps + begin * words;
    const __m256i qv = _mm256_set1_epi64x(static_cast<long long>(q));
    const __m256i qbv = words == 1 ? _mm256_set1_epi64x(static_cast<long long>(qb[0]))
                                   : _mm256_setr_epi64x(qb[0], qb[words - 1], qb[0], qb[words - 1]);
    const __m256i one = _mm256_set1_epi16(1);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m256i z = unrelated16<words>(rows + i * words, qbv);
        const __m256i key = _mm256_add_epi16(_mm256_add_epi16(doubled_distances16(qv, codes + i), one), z);
        store16(keys + i, key);
        count_pending16(pending, i);
    }
    count_pending_rest(pending, i);  // i: past the last full group of 16
    for (; i < count; ++i) {
        uint64_t shared = 0;
        for (size_t w = 0; w < words; ++w) shared |= rows[i * words + w] & qb[w];
        keys[i] = scalar_key(q, codes[i], shared != 0);
    }
}

}  // namespace

KeyKernel fused_key_kernel(const Database& db) {
    if (static_cast<int>(active_isa()) < static_cast<int>(Isa::Avx2) || db.words != 1) return nullptr;
    if (db.labels.ids != nullptr) return keys_ids;
    if (db.labels.bitmaps == nullptr) return nullptr;
    if (db.labels.words == 1) return keys_bitmaps<1>;
    if (db.labels.words == 2) return keys_bitmaps<2>;
    return nullptr;
}

#else
KeyKernel fused_key_kernel(const Database&) { return nullptr; }
#endif

}  // namespace shc
