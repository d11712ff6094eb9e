// AVX-512 VPOPCNTDQ kernels: one vector popcount per eight 64-bit words.
// Compiled everywhere, run only where __builtin_cpu_supports says the CPU has avx512f + avx512vpopcntdq.
//
// Eight items are done together and their per-lane counts folded into one vector of eight sums: each fold
// adds the even lanes of two vectors to their odd lanes, halving the lanes per item. A per-item horizontal
// sum (a store and eight scalar adds, or a shuffle chain) would cost more than the popcounts for q < 1024.
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

// (a, b) holding k lanes per item -> one vector holding k / 2 lanes per item, a's items first
SHC_AVX512 inline __m512i fold(__m512i a, __m512i b) {
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    return _mm512_add_epi64(_mm512_permutex2var_epi64(a, even, b), _mm512_permutex2var_epi64(a, odd, b));
}

SHC_AVX512 inline __m512i popcount_xor(__m512i q, const uint64_t* row) {
    return _mm512_popcnt_epi64(_mm512_xor_si512(q, _mm512_loadu_si512(row)));
}

// eight 64-bit counts (< 2^16) -> eight uint16
SHC_AVX512 inline void store8(__m512i counts, uint16_t* out) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi64_epi16(counts));
}

SHC_AVX512 void kernel1(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m512i qv = _mm512_set1_epi64(static_cast<long long>(q[0]));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) store8(popcount_xor(qv, db + i), out + i);
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(__builtin_popcountll(q[0] ^ db[i]));
}

// four items per vector (two lanes each)
SHC_AVX512 void kernel2(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m512i qv = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) store8(fold(popcount_xor(qv, db + 2 * i), popcount_xor(qv, db + 2 * i + 8)), out + i);
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(scalar_distance(q, db + 2 * i, 2));
}

// two items per vector (four lanes each)
SHC_AVX512 void kernel4(const uint64_t* q, const uint64_t* db, size_t n, size_t, uint16_t* out) {
    const __m512i qv = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint64_t* rows = db + 4 * i;
        const __m512i lo = fold(popcount_xor(qv, rows), popcount_xor(qv, rows + 8));
        const __m512i hi = fold(popcount_xor(qv, rows + 16), popcount_xor(qv, rows + 24));
        store8(fold(lo, hi), out + i);
    }
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(scalar_distance(q, db + 4 * i, 4));
}

// W words per code (W = 0: known only at run time): one accumulator of eight lanes per item, a masked load
// for the last partial group of eight words; folded as soon as two are ready, so that few stay live
template <size_t W>
SHC_AVX512 void kernelN(const uint64_t* q, const uint64_t* db, size_t n, size_t words, uint16_t* out) {
    const size_t width = W ? W : words, full = width / 8;
    const __mmask8 tail = static_cast<__mmask8>((1u << (width % 8)) - 1);
    const __m512i q_tail = _mm512_maskz_loadu_epi64(tail, q + 8 * full);
    auto item = [&](const uint64_t* row) SHC_AVX512 {
        __m512i sum = _mm512_setzero_si512();
        for (size_t w = 0; w < full; ++w) sum = _mm512_add_epi64(sum, popcount_xor(_mm512_loadu_si512(q + 8 * w), row + 8 * w));
        if (tail != 0)
            sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(_mm512_xor_si512(q_tail, _mm512_maskz_loadu_epi64(tail, row + 8 * full))));
        return sum;
    };
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint64_t* rows = db + i * width;
        auto four = [&](const uint64_t* r) SHC_AVX512 {
            return fold(fold(item(r), item(r + width)), fold(item(r + 2 * width), item(r + 3 * width)));
        };
        store8(fold(four(rows), four(rows + 4 * width)), out + i);
    }
    for (; i < n; ++i) out[i] = static_cast<uint16_t>(scalar_distance(q, db + i * width, width));
}

}  // namespace

HammingFn hamming_avx512(size_t words) {
    switch (words) {
        case 1: return kernel1;
        case 2: return kernel2;
        case 4: return kernel4;
        case 8: return kernelN<8>;
        case 16: return kernelN<16>;
        default: return kernelN<0>;
    }
}

#else
HammingFn hamming_avx512(size_t words) { return hamming_generic(words); }
#endif

}  // namespace shc
