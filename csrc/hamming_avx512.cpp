// AVX-512 VPOPCNTDQ kernels: one vector popcount per eight 64-bit words.
// Compiled everywhere, run only where __builtin_cpu_supports says the CPU has avx512f + avx512vpopcntdq.
// GCC 12's AVX-512 headers initialise "undefined" vectors with a self-assignment that -Wuninitialized flags.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "hamming.h"

namespace shc {

#if defined(__x86_64__) || defined(__i386__)

namespace {

#define SHC_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))

SHC_AVX512 inline unsigned scalar_distance(const uint64_t* q, const uint64_t* row, size_t words) {
    unsigned d = 0;
    for (size_t w = 0; w < words; ++w) d += static_cast<unsigned>(__builtin_popcountll(q[w] ^ row[w]));
    return d;
}

// eight 64-bit counts (< 2^16) -> eight uint16
SHC_AVX512 inline void store8(__m512i counts, uint16_t* out) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi64_epi16(counts));
}

SHC_AVX512 void kernel1(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m512i qv = _mm512_set1_epi64(static_cast<long long>(q[0]));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) store8(_mm512_popcnt_epi64(_mm512_xor_si512(qv, _mm512_loadu_si512(db + i))), out + i);
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(__builtin_popcountll(q[0] ^ db[i]));
}

// four items per vector: adjacent lanes summed, even lanes kept
SHC_AVX512 void kernel2(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m512i qv = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i a = _mm512_popcnt_epi64(_mm512_xor_si512(qv, _mm512_loadu_si512(db + 2 * i)));
        __m512i b = _mm512_popcnt_epi64(_mm512_xor_si512(qv, _mm512_loadu_si512(db + 2 * i + 8)));
        const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        store8(_mm512_add_epi64(_mm512_permutex2var_epi64(a, even, b), _mm512_permutex2var_epi64(a, odd, b)), out + i);
    }
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(scalar_distance(q, db + 2 * i, 2));
}

// any width: masked loads cover the last partial group of eight words
SHC_AVX512 void kernelN(const uint64_t* q, const uint64_t* db, size_t n, size_t words, uint16_t* out) {
    for (size_t i = 0; i < n; ++i) {
        const uint64_t* row = db + i * words;
        __m512i acc = _mm512_setzero_si512();
        for (size_t w = 0; w < words; w += 8) {
            const size_t left = words - w;
            const __mmask8 mask = left >= 8 ? static_cast<__mmask8>(0xFF) : static_cast<__mmask8>((1u << left) - 1);
            const __m512i x = _mm512_xor_si512(_mm512_maskz_loadu_epi64(mask, q + w), _mm512_maskz_loadu_epi64(mask, row + w));
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
        }
        alignas(64) uint64_t lanes[8];  // plain horizontal sum (GCC 12's _mm512_reduce_add_epi64 warns)
        _mm512_store_si512(lanes, acc);
        uint64_t d = 0;
        for (uint64_t v : lanes) d += v;
        out[i] = static_cast<uint16_t>(d);
    }
}

}  // namespace

HammingFn hamming_avx512(size_t words) {
    switch (words) {
        case 1: return kernel1;
        case 2: return kernel2;
        default: return kernelN;  // 4 words = one masked load per item
    }
}

#else
HammingFn hamming_avx512(size_t words) { return hamming_generic(words); }
#endif

}  // namespace shc
