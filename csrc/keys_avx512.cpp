// AVX-512 twins of the key searches (keys.cpp) on CPUs with AVX-512 BW + VBMI2 (Ice Lake, Zen 4 and later):
// a compare gives a lane mask directly and vpcompressb/w left-packs 64 byte keys (32 two-byte ones) in one
// instruction, where AVX2 needs a movemask and four table-driven shuffles and stores per 32.
// Compress to a register, then store (compress-to-memory is microcoded on Zen 4): select stores the whole vector
// (at out + m, m <= i: it ends by out + count, inside the caller's buffer); bucket_relevance stores only the
// packed lanes (a masked store), since its callers give each bucket just its items' room + 8.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "keys.h"

namespace shc {

#ifdef SHC_KEYS_X86

#define SHC_KEYS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")))

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

}  // namespace

SHC_KEYS_AVX512 size_t select_avx512(const uint8_t* keys, size_t count, uint8_t limit, uint8_t* out) {
    const __m512i lim = _mm512_set1_epi8(static_cast<char>(limit));
    size_t i = 0, m = 0;
    for (; i + 64 <= count; i += 64) {
        const __m512i x = _mm512_loadu_si512(keys + i);
        const __mmask64 keep = _mm512_cmple_epu8_mask(x, lim);
        _mm512_storeu_si512(out + m, _mm512_maskz_compress_epi8(keep, x));
        m += size_t(__builtin_popcountll(keep));
    }
    const __mmask64 rest = first_lanes(count - i);
    const __m512i x = _mm512_maskz_loadu_epi8(rest, keys + i);
    const __mmask64 keep = _mm512_mask_cmple_epu8_mask(rest, x, lim);
    const size_t c = size_t(__builtin_popcountll(keep));
    _mm512_mask_storeu_epi8(out + m, first_lanes(c), _mm512_maskz_compress_epi8(keep, x));
    return m + c;
}

SHC_KEYS_AVX512 size_t select_avx512(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out) {
    const __m512i lim = _mm512_set1_epi16(static_cast<short>(limit));
    size_t i = 0, m = 0;
    for (; i + 32 <= count; i += 32) {
        const __m512i x = _mm512_loadu_si512(keys + i);
        const __mmask32 keep = _mm512_cmple_epu16_mask(x, lim);
        _mm512_storeu_si512(out + m, _mm512_maskz_compress_epi16(keep, x));
        m += size_t(__builtin_popcount(keep));
    }
    const __mmask32 rest = __mmask32(first_lanes(count - i));
    const __m512i x = _mm512_maskz_loadu_epi16(rest, keys + i);
    const __mmask32 keep = _mm512_mask_cmple_epu16_mask(rest, x, lim);
    const size_t c = size_t(__builtin_popcount(keep));
    _mm512_mask_storeu_epi16(out + m, __mmask32(first_lanes(c)), _mm512_maskz_compress_epi16(keep, x));
    return m + c;
}

// key | 1 == 2d + 1 selects bucket d; key & 1 is the byte written
SHC_KEYS_AVX512 size_t bucket_relevance_avx512(const uint8_t* keys, size_t count, unsigned d, uint8_t* out) {
    const __m512i one = _mm512_set1_epi8(1), odd = _mm512_set1_epi8(static_cast<char>(make_key<uint8_t>(d, true)));
    size_t i = 0, m = 0;
    for (; i + 64 <= count; i += 64) {
        const __m512i x = _mm512_loadu_si512(keys + i);
        const __mmask64 in = _mm512_cmpeq_epi8_mask(_mm512_or_si512(x, one), odd);
        const size_t c = size_t(__builtin_popcountll(in));
        _mm512_mask_storeu_epi8(out + m, first_lanes(c), _mm512_maskz_compress_epi8(in, _mm512_and_si512(x, one)));
        m += c;
    }
    const __mmask64 rest = first_lanes(count - i);
    const __m512i x = _mm512_maskz_loadu_epi8(rest, keys + i);
    const __mmask64 in = _mm512_mask_cmpeq_epi8_mask(rest, _mm512_or_si512(x, one), odd);
    const size_t c = size_t(__builtin_popcountll(in));
    _mm512_mask_storeu_epi8(out + m, first_lanes(c), _mm512_maskz_compress_epi8(in, _mm512_and_si512(x, one)));
    return m + c;
}

// two-byte keys, their relevance narrowed to bytes: 32 at a time
SHC_KEYS_AVX512 size_t bucket_relevance_avx512(const uint16_t* keys, size_t count, unsigned d, uint8_t* out) {
    const __m512i one = _mm512_set1_epi16(1);
    const __m512i odd = _mm512_set1_epi16(static_cast<short>(make_key<uint16_t>(d, true)));
    size_t i = 0, m = 0;
    for (; i + 32 <= count; i += 32) {
        const __m512i x = _mm512_loadu_si512(keys + i);
        const __mmask32 in = _mm512_cmpeq_epi16_mask(_mm512_or_si512(x, one), odd);
        const __m256i relevant = _mm512_cvtepi16_epi8(_mm512_and_si512(x, one));
        const size_t c = size_t(__builtin_popcount(in));
        _mm256_mask_storeu_epi8(out + m, __mmask32(first_lanes(c)), _mm256_maskz_compress_epi8(in, relevant));
        m += c;
    }
    const __mmask32 rest = __mmask32(first_lanes(count - i));
    const __m512i x = _mm512_maskz_loadu_epi16(rest, keys + i);
    const __mmask32 in = _mm512_mask_cmpeq_epi16_mask(rest, _mm512_or_si512(x, one), odd);
    const size_t c = size_t(__builtin_popcount(in));
    const __m256i relevant = _mm512_cvtepi16_epi8(_mm512_and_si512(x, one));
    _mm256_mask_storeu_epi8(out + m, __mmask32(first_lanes(c)), _mm256_maskz_compress_epi8(in, relevant));
    return m + c;
}

#endif

}  // namespace shc
