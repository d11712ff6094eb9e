// AVX2 popcount building blocks shared by the Hamming kernels and the fused key kernels: byte popcounts by nibble
// lookup (vpshufb), summed per 64-bit lane with vpsadbw.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define SHC_AVX2 __attribute__((target("avx2,popcnt")))

namespace shc {

// popcount of every byte, times `scale` (1, or 2 for keys: distance << 1 straight from the table)
template <int scale = 1>
SHC_AVX2 inline __m256i popcount_bytes(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1 * scale, 1 * scale, 2 * scale, 1 * scale, 2 * scale, 2 * scale,
                                         3 * scale, 1 * scale, 2 * scale, 2 * scale, 3 * scale, 2 * scale, 3 * scale,
                                         3 * scale, 4 * scale,  //
                                         0, 1 * scale, 1 * scale, 2 * scale, 1 * scale, 2 * scale, 2 * scale,
                                         3 * scale, 1 * scale, 2 * scale, 2 * scale, 3 * scale, 2 * scale, 3 * scale,
                                         3 * scale, 4 * scale);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// popcount of each 64-bit lane (times `scale`)
template <int scale = 1>
SHC_AVX2 inline __m256i popcount_lanes(__m256i v) {
    return _mm256_sad_epu8(popcount_bytes<scale>(v), _mm256_setzero_si256());
}

}  // namespace shc

#endif
