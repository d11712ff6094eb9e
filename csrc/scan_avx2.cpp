// Fused AVX2 key kernels for 64-bit codes: distance, relevance and key of 16 database items per step, without the
// intermediate distance array of the generic path (Hamming kernel, then make_keys). Keys are built in 16-bit
// lanes as (distance << 1) + relevant, the doubled distance read straight off a doubled popcount table, and
// stored as bytes (q <= 64). Relevance: class ids compared in the kernel; label bitmaps as the bits the scan
// ORs from the query's labels' item bitsets (Database::items_by_label), 16 of them broadcast and tested per step.
#include "scan.h"
#include "popcount_avx2.h"

namespace shc {

#if defined(__x86_64__) || defined(__i386__)

namespace {

SHC_AVX2 inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Sixteen 16-bit lanes from four vectors of four 64-bit lanes (a, b, c, d: items 0-3, 4-7, 8-11, 12-15), each lane
// holding a value in [0, 2^15): two signed packs halve the width twice, one permute restores order.
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

// The fused loop for query code q over items [0, count): keys from the doubled distances minus the relevance
// masks, 16 at a time, then the tail one by one. Relevance: lanes(i) is -1 per 16-bit lane where item i + lane is
// relevant, one(i) item i's relevance.
template <class Relevance>
SHC_AVX2 inline void fused_keys(uint64_t q, const uint64_t* codes, size_t count, const Relevance& relevance,
                                uint8_t* keys, const PendingKeys& pending) {
    const __m256i qv = _mm256_set1_epi64x(static_cast<long long>(q));
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        store16(keys + i, _mm256_sub_epi16(doubled_distances16(qv, codes + i), relevance.lanes(i)));
        count_pending16(pending, i);
    }
    count_pending_rest(pending, i);  // i: past the last full group of 16
    for (; i < count; ++i) keys[i] = scalar_key(q, codes[i], relevance.one(i));
}

// relevant = same class id
struct SameClass {
    const int32_t* ids;
    int32_t query_id;
    __m256i query_ids;
    SHC_AVX2 __m256i lanes(size_t i) const {
        // the pack interleaves 128-bit halves (items 0-3, 8-11 | 4-7, 12-15), vpermq undoes it
        return _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cmpeq_epi32(load(ids + i), query_ids),
                                                           _mm256_cmpeq_epi32(load(ids + i + 8), query_ids)),
                                        _MM_SHUFFLE(3, 1, 2, 0));
    }
    bool one(size_t i) const { return ids[i] == query_id; }
};

// relevant = bit i of `bits` (the query's labels' item bitsets, OR-ed by the scan)
struct RelevantBits {
    const uint64_t* bits;
    __m256i lane_bit;  // lane i tests bit i of the broadcast 16 bits
    SHC_AVX2 __m256i lanes(size_t i) const {
        const int bits16 = int(bits[i / 64] >> (i % 64)) & 0xffff;
        return _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(short(bits16)), lane_bit), lane_bit);
    }
    bool one(size_t i) const { return (bits[i / 64] >> (i % 64)) & 1; }
};

SHC_AVX2 void keys_ids(const uint64_t* query_codes, const Labels& query_labels, size_t qi, const Database& db,
                       size_t begin, size_t count, const uint64_t*, uint8_t* keys, const PendingKeys& pending) {
    const int32_t qid = query_labels.ids[qi];
    fused_keys(query_codes[qi], db.codes + begin, count, SameClass{db.labels.ids + begin, qid, _mm256_set1_epi32(qid)},
               keys, pending);
}

SHC_AVX2 void keys_relevant_bits(const uint64_t* query_codes, const Labels&, size_t qi, const Database& db,
                                 size_t begin, size_t count, const uint64_t* relevant, uint8_t* keys,
                                 const PendingKeys& pending) {
    const __m256i lane_bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                               16384, -32768);
    fused_keys(query_codes[qi], db.codes + begin, count, RelevantBits{relevant, lane_bit}, keys, pending);
}

}  // namespace

bool fused_keys_fit(const Database& db) {
    if (static_cast<int>(active_isa()) < static_cast<int>(Isa::Avx2) || db.words != 1) return false;
    return db.labels.ids != nullptr || (db.labels.bitmaps != nullptr && db.labels.words <= 2);
}

KeyKernel fused_key_kernel(const Database& db) {
    if (!fused_keys_fit(db)) return nullptr;
    if (db.labels.ids != nullptr) return keys_ids;
    return db.items_by_label != nullptr ? keys_relevant_bits : nullptr;
}

#else
bool fused_keys_fit(const Database&) { return false; }
KeyKernel fused_key_kernel(const Database&) { return nullptr; }
#endif

}  // namespace shc
