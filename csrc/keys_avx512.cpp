// AVX-512 twins of the key searches (keys.cpp) on CPUs with AVX-512 BW + VBMI2 (Ice Lake, Zen 4 and later):
// a compare gives a lane mask directly and vpcompressb/w left-packs 64 byte keys (32 two-byte ones) in one
// instruction, where AVX2 needs a movemask and four table-driven shuffles and stores per 32.
// Compress to a register, then a masked store of the packed lanes (compress-to-memory is microcoded on Zen 4);
// the last partial vector by a masked load.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "keys.h"

#include <algorithm>

namespace shc {

#ifdef SHC_KEYS_X86

bool keys_use_avx512() {
    static const bool cpu = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vbmi2");
    }();
    return cpu && active_isa() == Isa::Avx512;
}

namespace {

// lanes [0, n) of a 64-lane mask, n <= 64
inline uint64_t first_lanes(size_t n) { return n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1; }

// One overload per key width: a vector of keys loaded in lanes `rest` (the others zero), the lanes in `rest`
// whose key is at most / equal to a given one, a vector's lanes in `keep` packed to its front, and the first c
// lanes of a vector stored (a masked store: no byte past them is written).
SHC_KEYS_AVX512 inline __m512i load_keys(uint64_t rest, const uint8_t* keys) { return _mm512_maskz_loadu_epi8(rest, keys); }
SHC_KEYS_AVX512 inline __m512i load_keys(uint64_t rest, const uint16_t* keys) {
    return _mm512_maskz_loadu_epi16(__mmask32(rest), keys);
}
SHC_KEYS_AVX512 inline uint64_t at_most(__m512i x, uint64_t rest, uint8_t limit) {
    return _mm512_mask_cmple_epu8_mask(rest, x, _mm512_set1_epi8(static_cast<char>(limit)));
}
SHC_KEYS_AVX512 inline uint64_t at_most(__m512i x, uint64_t rest, uint16_t limit) {
    return _mm512_mask_cmple_epu16_mask(__mmask32(rest), x, _mm512_set1_epi16(static_cast<short>(limit)));
}
SHC_KEYS_AVX512 inline uint64_t equal(__m512i x, uint64_t rest, uint8_t key) {
    return _mm512_mask_cmpeq_epi8_mask(rest, x, _mm512_set1_epi8(static_cast<char>(key)));
}
SHC_KEYS_AVX512 inline uint64_t equal(__m512i x, uint64_t rest, uint16_t key) {
    return _mm512_mask_cmpeq_epi16_mask(__mmask32(rest), x, _mm512_set1_epi16(static_cast<short>(key)));
}
SHC_KEYS_AVX512 inline __m512i pack_front(uint64_t keep, __m512i x, uint8_t) { return _mm512_maskz_compress_epi8(keep, x); }
SHC_KEYS_AVX512 inline __m512i pack_front(uint64_t keep, __m512i x, uint16_t) {
    return _mm512_maskz_compress_epi16(__mmask32(keep), x);
}
SHC_KEYS_AVX512 inline void store_first(uint8_t* out, size_t c, __m512i x) { _mm512_mask_storeu_epi8(out, first_lanes(c), x); }
SHC_KEYS_AVX512 inline void store_first(uint16_t* out, size_t c, __m512i x) {
    _mm512_mask_storeu_epi16(out, __mmask32(first_lanes(c)), x);
}
SHC_KEYS_AVX512 inline void store_first(uint8_t* out, size_t c, __m256i x) {
    _mm256_mask_storeu_epi8(out, __mmask32(first_lanes(c)), x);
}
// the relevance bits (key & 1) of a vector's keys as bytes, those in `keep` packed to the front
SHC_KEYS_AVX512 inline __m512i relevance_front(uint64_t keep, __m512i x, uint8_t) {
    return _mm512_maskz_compress_epi8(keep, _mm512_and_si512(x, _mm512_set1_epi8(1)));
}
SHC_KEYS_AVX512 inline __m256i relevance_front(uint64_t keep, __m512i x, uint16_t) {
    return _mm256_maskz_compress_epi8(__mmask32(keep), _mm512_cvtepi16_epi8(_mm512_and_si512(x, _mm512_set1_epi16(1))));
}

}  // namespace

template <class Key>
SHC_KEYS_AVX512 size_t select_avx512(const Key* keys, size_t count, Key limit, Key* out) {
    constexpr size_t lanes = 64 / sizeof(Key);
    size_t m = 0;
    for (size_t i = 0; i < count; i += lanes) {
        const uint64_t rest = first_lanes(std::min(lanes, count - i));
        const __m512i x = load_keys(rest, keys + i);
        const uint64_t keep = at_most(x, rest, limit);
        const size_t c = size_t(__builtin_popcountll(keep));
        store_first(out + m, c, pack_front(keep, x, Key{}));
        m += c;
    }
    return m;
}

// bucket d: the keys 2d and 2d + 1
template <class Key>
SHC_KEYS_AVX512 size_t bucket_relevance_avx512(const Key* keys, size_t count, unsigned d, uint8_t* out) {
    constexpr size_t lanes = 64 / sizeof(Key);
    const Key other = make_key<Key>(d, false), hit = make_key<Key>(d, true);
    size_t m = 0;
    for (size_t i = 0; i < count; i += lanes) {
        const uint64_t rest = first_lanes(std::min(lanes, count - i));
        const __m512i x = load_keys(rest, keys + i);
        const uint64_t in = equal(x, rest, other) | equal(x, rest, hit);
        const size_t c = size_t(__builtin_popcountll(in));
        store_first(out + m, c, relevance_front(in, x, Key{}));
        m += c;
    }
    return m;
}

template size_t select_avx512(const uint8_t*, size_t, uint8_t, uint8_t*);
template size_t select_avx512(const uint16_t*, size_t, uint16_t, uint16_t*);
template size_t bucket_relevance_avx512(const uint8_t*, size_t, unsigned, uint8_t*);
template size_t bucket_relevance_avx512(const uint16_t*, size_t, unsigned, uint8_t*);

#endif

}  // namespace shc
