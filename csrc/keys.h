// Per-item ranking keys and the vector searches over them.
//
// The scan gives every database item of a query one key, (distance << 1) | relevant, in index order.
// The `index`-ties walks look only for some keys (those up to a bucket, or those of one bucket); AVX2 tests 16
// keys at once, so the keys they skip cost a fraction of a cycle each. Each search has a scalar twin (the
// generic/popcnt paths), chosen with the active ISA (hamming.h) so that tests run both.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hamming.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SHC_KEYS_X86 1
#endif

namespace shc {

inline uint16_t make_key(unsigned distance, bool relevant) { return static_cast<uint16_t>(distance << 1 | relevant); }
inline unsigned key_bucket(uint16_t key) { return key >> 1u; }
inline bool key_relevant(uint16_t key) { return key & 1u; }

inline bool keys_use_avx2() { return static_cast<int>(active_isa()) >= static_cast<int>(Isa::Avx2); }

// visit(i) for every i < count with keys[i] <= limit, in index order.
template <class Visit>
inline void for_each_key_at_most_scalar(const uint16_t* keys, size_t count, uint16_t limit, Visit&& visit) {
    for (size_t i = 0; i < count; ++i)
        if (keys[i] <= limit) visit(i);
}

#ifdef SHC_KEYS_X86
// one bit per key (16 keys) where key <= limit (unsigned: min(key, limit) == key)
__attribute__((target("avx2"))) inline uint32_t keys_at_most_avx2(const uint16_t* keys, __m256i limit) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys));
    const __m256i le = _mm256_cmpeq_epi16(_mm256_min_epu16(x, limit), x);
    // 16-bit lanes -> bytes (the saturating pack keeps 0 / -1), one mask bit per key in key order
    const __m128i bytes = _mm_packs_epi16(_mm256_castsi256_si128(le), _mm256_extracti128_si256(le, 1));
    return static_cast<uint32_t>(_mm_movemask_epi8(bytes));
}

template <class Visit>
__attribute__((target("avx2,bmi"))) inline void for_each_key_at_most_avx2(const uint16_t* keys, size_t count,
                                                                          uint16_t limit, Visit&& visit) {
    const __m256i lim = _mm256_set1_epi16(static_cast<short>(limit));
    size_t i = 0;
    for (; i + 16 <= count; i += 16)
        for (uint32_t mask = keys_at_most_avx2(keys + i, lim); mask; mask &= mask - 1)
            visit(i + size_t(__builtin_ctz(mask)));
    for (; i < count; ++i)
        if (keys[i] <= limit) visit(i);
}
#endif

template <class Visit>
inline void for_each_key_at_most(const uint16_t* keys, size_t count, uint16_t limit, Visit&& visit) {
#ifdef SHC_KEYS_X86
    if (keys_use_avx2()) return for_each_key_at_most_avx2(keys, count, limit, visit);
#endif
    for_each_key_at_most_scalar(keys, count, limit, visit);
}

// Walking keys[begin..] in index order, from `seen` items of bucket d of which `relevant` are relevant, up to
// the m-th item of bucket d (which must exist): returns the relevant items among those m.
int64_t relevant_in_bucket_prefix(const uint16_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant);

}  // namespace shc
