// AVX2 popcount building blocks of the Hamming kernels: byte popcounts by nibble
// lookup (vpshufb), summed per 64-bit lane with vpsadbw.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define SHC_AVX2 __attribute__((target("avx2,popcnt,prfchw")))  // prfchw: prefetch for writing (a no-op where absent)

namespace shc {

// popcount of every byte
SHC_AVX2 inline __m256i popcount_bytes(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// popcount of each 64-bit lane
SHC_AVX2 inline __m256i popcount_lanes(__m256i v) { return _mm256_sad_epu8(popcount_bytes(v), _mm256_setzero_si256()); }

}  // namespace shc

#endif
