// AVX2 kernels: byte popcounts by nibble lookup (vpshufb), summed per 64-bit lane with vpsadbw.
#include <algorithm>

#include "hamming.h"
#include "popcount_avx2.h"

namespace shc {

#if defined(__x86_64__) || defined(__i386__)

namespace {

SHC_AVX2 inline unsigned scalar_distance(const uint64_t* q, const uint64_t* row, size_t words) {
    unsigned d = 0;
    for (size_t w = 0; w < words; ++w) d += static_cast<unsigned>(__builtin_popcountll(q[w] ^ row[w]));
    return d;
}

// lanes 0..3 hold four 64-bit counts (< 2^16): store them as four uint16
SHC_AVX2 inline void store4(__m256i counts, uint16_t* out) {
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m128i c32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(counts, pick));
    __m128i c16 = _mm_packus_epi32(c32, c32);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), c16);
}

// eight items per iteration: two vectors of lane counts packed into eight uint16
SHC_AVX2 void kernel1(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m256i qv = _mm256_set1_epi64x(static_cast<long long>(q[0]));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i a = popcount_lanes(_mm256_xor_si256(qv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(db + i))));
        const __m256i b = popcount_lanes(_mm256_xor_si256(qv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(db + i + 4))));
        // counts sit in the low 16 bits of each 64-bit lane: a | b << 32 holds (a0, b0, a1, b1, a2, b2, a3, b3) as
        // 32-bit values; pack to 16 bits and reorder to (a0..a3, b0..b3)
        const __m256i ab = _mm256_or_si256(a, _mm256_slli_epi64(b, 32));
        const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        const __m256i sorted = _mm256_permutevar8x32_epi32(ab, order);
        const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(sorted), _mm256_extracti128_si256(sorted, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), packed);
    }
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(__builtin_popcountll(q[0] ^ db[i]));
}

// two items per vector: lanes (a0, a1, b0, b1)
SHC_AVX2 void kernel2(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m256i qv = _mm256_setr_epi64x(q[0], q[1], q[0], q[1]);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i s0 = popcount_lanes(_mm256_xor_si256(qv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(db + 2 * i))));
        __m256i s1 = popcount_lanes(_mm256_xor_si256(qv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(db + 2 * i + 4))));
        // pairwise sums: lane0 = item0, lane2 = item1 (of each vector)
        s0 = _mm256_add_epi64(s0, _mm256_shuffle_epi32(s0, _MM_SHUFFLE(1, 0, 3, 2)));
        s1 = _mm256_add_epi64(s1, _mm256_shuffle_epi32(s1, _MM_SHUFFLE(1, 0, 3, 2)));
        // s0 = (i0, i0, i1, i1), s1 = (i2, i2, i3, i3) -> (i0, i2, i1, i3) -> (i0, i1, i2, i3)
        const __m256i mixed = _mm256_blend_epi32(s0, s1, 0xCC);
        store4(_mm256_permute4x64_epi64(mixed, _MM_SHUFFLE(3, 1, 2, 0)), out + i);
    }
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(scalar_distance(q, db + 2 * i, 2));
}

SHC_AVX2 inline unsigned hsum_lanes(__m256i s) {
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
    return static_cast<unsigned>(_mm_cvtsi128_si32(t));
}

// four items' lane sums (vpsadbw results: four 64-bit lanes each) folded into one vector, lane i = item i's total
SHC_AVX2 inline __m256i fold4(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_add_epi64(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));  // a01 b01 a23 b23
    const __m256i cd = _mm256_add_epi64(_mm256_unpacklo_epi64(c, d), _mm256_unpackhi_epi64(c, d));
    return _mm256_add_epi64(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

// lane sums of the popcounts of four-word chunks [c0, c1) of query XOR row; c1 - c0 <= 31, so that the byte
// counts (at most 8 per chunk) fit a byte before the one vpsadbw
SHC_AVX2 inline __m256i chunk_lane_counts(const uint64_t* q, const uint64_t* row, size_t c0, size_t c1) {
    __m256i bytes = _mm256_setzero_si256();
    for (size_t c = c0; c < c1; ++c)
        bytes = _mm256_add_epi8(bytes, popcount_bytes(_mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 4 * c)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 4 * c)))));
    return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

// W = 4, 8, 16 words: four items at a time, their lane sums folded (no per-item horizontal sum)
template <size_t W>
SHC_AVX2 void kernel_wide(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    static_assert(W % 4 == 0 && W / 4 <= 31, "whole four-word chunks, one vpsadbw per item");
    const auto item = [q](const uint64_t* row) SHC_AVX2 { return chunk_lane_counts(q, row, 0, W / 4); };
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint64_t* rows = db + i * W;
        store4(fold4(item(rows), item(rows + W), item(rows + 2 * W), item(rows + 3 * W)), out + i);
    }
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(scalar_distance(q, db + i * W, W));
}

// any width: byte counts of up to 31 four-word chunks are summed before one vpsadbw (31 * 8 < 256)
SHC_AVX2 void kernelN(const uint64_t* q, const uint64_t* db, size_t n, size_t words, uint16_t* out) {
    const size_t chunks = words / 4;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t* row = db + i * words;
        __m256i total = _mm256_setzero_si256();
        for (size_t c0 = 0; c0 < chunks; c0 += 31)
            total = _mm256_add_epi64(total, chunk_lane_counts(q, row, c0, std::min(c0 + 31, chunks)));
        unsigned d = hsum_lanes(total);
        d += scalar_distance(q + 4 * chunks, row + 4 * chunks, words - 4 * chunks);
        out[i] = static_cast<uint16_t>(d);
    }
}

}  // namespace

HammingFn hamming_avx2(size_t words) {
    switch (words) {
        case 1: return kernel1;
        case 2: return kernel2;
        case 4: return kernel_wide<4>;
        case 8: return kernel_wide<8>;
        case 16: return kernel_wide<16>;
        default: return kernelN;
    }
}

#else
HammingFn hamming_avx2(size_t words) { return hamming_generic(words); }
#endif

}  // namespace shc
