// DPSH's bank likelihood (likelihood.h) in one pass: per entry of Θ one exp, one log1p and one reciprocal, all in
// registers, where torch makes a dozen passes over the B×N matrix (2–3× faster than torch's chunked route on one
// core at B = 64, q = 32, N = 100,000: bench/test_bench_methods.py). The batch lies across the vector lanes
// (h and the gradient are held transposed, q × b rounded up to whole steps); a step is a few bank rows (Vec::rows)
// by two vectors of batch rows: each row's code value, broadcast from memory, serves both vectors, each loaded h
// vector every row of the step.
//
// One body, written with GCC vector extensions, is compiled three times, for AVX-512, AVX2 + FMA and the baseline
// ISA, and chosen at run time with the popcount path (isa.cpp; SHC_ISA and set_isa() choose it too).
// GCC notes that passing 64-byte vectors by value changes the ABI without AVX-512; every such function is inlined.
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12's AVX-512 headers initialise "undefined" vectors with a self-assignment that -Wuninitialized flags.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "likelihood.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "evaluate.h"
#include "hamming.h"

namespace shc {

namespace {

constexpr size_t kTiles = 2;   // vectors of batch rows per step: each broadcast bank value serves two
constexpr size_t kMaxLanes = 16 * kTiles;  // the batch is padded to whole steps of the widest path
constexpr size_t kMaxRows = 8;

// A vector of W floats and its integer twins; W = 16 (AVX-512), 8 (AVX2), 4 (SSE2), each path its native width;
// and the bank rows per step: 8 × 2 vectors = 16 independent FMA chains with AVX-512's 32 registers, 4 × 2 with
// AVX2's 16 (8 there spills: 6% slower; 6: 3% slower, measured).
template <size_t W, size_t Rows>
struct Vec {
    typedef float F __attribute__((vector_size(4 * W)));
    typedef int32_t I __attribute__((vector_size(4 * W)));
    typedef uint32_t U __attribute__((vector_size(4 * W)));
    typedef float H __attribute__((vector_size(2 * W)));   // half a vector of floats
    typedef double D __attribute__((vector_size(4 * W)));  // W/2 doubles: one native vector
    static constexpr size_t lanes = W;
    static constexpr size_t rows = Rows;
};

#define SHC_INLINE inline __attribute__((always_inline))

template <class V>
SHC_INLINE V load(const void* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class V>
SHC_INLINE void store(void* p, V v) { std::memcpy(p, &v, sizeof v); }

// max(a, b) lane by lane, one vmaxps on x86 (GCC compiles the comparison on generic vectors to a compare and a blend)
template <class F>
SHC_INLINE F vmax(F a, F b) { return a > b ? a : b; }

#if defined(__x86_64__) || defined(__i386__)
typedef float F4 __attribute__((vector_size(16)));
typedef float F8 __attribute__((vector_size(32)));
typedef float F16 __attribute__((vector_size(64)));
template <>
SHC_INLINE F4 vmax<F4>(F4 a, F4 b) { return (F4)_mm_max_ps((__m128)a, (__m128)b); }
template <>
inline __attribute__((target("avx"))) F8 vmax<F8>(F8 a, F8 b) { return (F8)_mm256_max_ps((__m256)a, (__m256)b); }
template <>
inline __attribute__((target("avx512f"))) F16 vmax<F16>(F16 a, F16 b) {
    return (F16)_mm512_max_ps((__m512)a, (__m512)b);
}
#endif

// e^(n·ln2 + r) / 2^n for |r| ≤ ln2/2: the degree-7 polynomial of Cephes' expf (relative error ~1e-7), after the
// Cody–Waite reduction r = x − n·ln2 in two parts (ln2's first bits exact).
template <class F>
SHC_INLINE F exp_reduced(F x, F n) {
    const F r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * (r * r) + r + 1.0f;
}

// e^x for x ≤ 0 (below −87 it returns about 2^−126 instead of a denormal or 0: far below what the sums resolve);
// 2^n is built in the exponent field.
template <class V>
SHC_INLINE typename V::F exp_nonpositive(typename V::F x) {
    using F = typename V::F;
    x = vmax(x, F{} - 87.0f);
    // x·log2(e) rounded to the nearest integer n by adding 1.5·2^23 (+ 127, the exponent bias): the sum's low
    // mantissa bits are n + 127 (1 … 127 here), so shifting its bits left by 23 makes 2^n
    constexpr float kShift = 12582912.0f + 127.0f;
    const F t = x * 1.44269504088896341f + kShift;
    const F n = t - kShift;
    return exp_reduced(x, n) * (F)((typename V::I)t << 23);  // casts between vector types of one size keep bits
}

// log(1 + e) for 0 ≤ e ≤ 1 as e·P(e), P of degree 8 fitted to log(1 + e)/e on [0, 1] (float32 relative error
// ≤ 2e-7 over the interval, full relative precision near 0): nine FMAs, no range split.
template <class V>
SHC_INLINE typename V::F log1p_unit(typename V::F e) {
    typename V::F p = e * 0.005253457929939032f - 0.02958850748836994f;
    p = p * e + 0.07836166769266129f;
    p = p * e - 0.13674770295619965f;
    p = p * e + 0.19111430644989014f;
    p = p * e - 0.24844369292259216f;
    p = p * e + 0.33319270610809326f;
    p = p * e - 0.49999502301216125f;
    p = p * e + 1.0f;
    return e * p;
}

// 1/d for 1 ≤ d ≤ 2: the minimax line 24/17 − 8/17·d (relative error ≤ 1/17), then three Newton steps, each
// squaring the error (to ~1e-10): seven FMAs where a vector division would stall its port for 10–16 cycles.
template <class V>
SHC_INLINE typename V::F reciprocal_1_2(typename V::F d) {
    typename V::F x = 1.41176470588235294f - 0.470588235294117647f * d;
    for (int step = 0; step < 3; ++step) x = x + x * (1.0f - d * x);
    return x;
}

#if defined(__x86_64__) || defined(__i386__)
// AVX-512 has an instruction for each slow part: vscalefps builds 2^n·p and underflows to 0 by itself (no
// exponent arithmetic; the clamp only keeps −inf from making a NaN), vrcp14ps starts the reciprocal at 2^−14.
// (not always_inline: chunk_body, which calls them, has no target of its own; chunk_avx512 flattens them in)
#define SHC_AVX512_INLINE inline __attribute__((target("avx512f")))
template <>
SHC_AVX512_INLINE Vec<16, 8>::F exp_nonpositive<Vec<16, 8>>(Vec<16, 8>::F x) {
    using F = Vec<16, 8>::F;
    x = vmax(x, F{} - 200.0f);
    const F n = (F)_mm512_roundscale_ps((__m512)(x * 1.44269504088896341f),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return (F)_mm512_scalef_ps((__m512)exp_reduced(x, n), (__m512)n);
}

template <>
SHC_AVX512_INLINE Vec<16, 8>::F reciprocal_1_2<Vec<16, 8>>(Vec<16, 8>::F d) {
    const Vec<16, 8>::F x = (Vec<16, 8>::F)_mm512_rcp14_ps((__m512)d);
    return x + x * (1.0f - d * x);  // one Newton step: relative error 2^−28
}

// AVX's vrcpps starts at 1.5·2^−12; one Newton step leaves ~1.4e-7 (σ is formed so that this stays relative
// to its smaller side: chunk_body).
template <>
inline __attribute__((target("avx2,fma"))) Vec<8, 4>::F reciprocal_1_2<Vec<8, 4>>(Vec<8, 4>::F d) {
    const Vec<8, 4>::F x = (Vec<8, 4>::F)_mm256_rcp_ps((__m256)d);
    return x + x * (1.0f - d * x);
}
#endif

struct Problem {
    const float* hT;              // q × lanes: h transposed, zero beyond the batch
    const uint32_t* labelsT;      // words × lanes
    const float* valid;           // lanes: 1 for batch rows, 0 for the padding
    size_t lanes;                 // b rounded up to kMaxLanes
    const float* bank;            // n × q
    const uint32_t* bank_labels;  // n × words
    size_t n, q, words;
    const float* zero_row;        // q zeros and `words` zero label words: the rows past the end of the last step
    const uint32_t* zero_labels;
};

// Rows [r0, r1) of the bank: the likelihood's partial sum, and the partial gradient added into gT (q × lanes).
template <class V, size_t Words>
SHC_INLINE double chunk_body(const Problem& p, size_t r0, size_t r1, float* gT) {
    using F = typename V::F;
    using U = typename V::U;
    constexpr size_t W = V::lanes, kRows = V::rows;
    const size_t lanes = p.lanes, q = p.q;  // locals: the stores into gT could otherwise alias them
    const size_t words = Words ? Words : p.words;
    typename V::D totals = {};
    for (size_t j = r0; j < r1; j += kRows) {
        const float* rows[kRows];
        const uint32_t* row_labels[kRows];
        float row_valid[kRows];
        for (size_t r = 0; r < kRows; ++r) {
            const bool inside = j + r < r1;
            rows[r] = inside ? p.bank + (j + r) * q : p.zero_row;
            row_labels[r] = inside ? p.bank_labels + (j + r) * p.words : p.zero_labels;
            row_valid[r] = inside ? 1.0f : 0.0f;
        }
        for (size_t t = 0; t < lanes; t += W * kTiles) {
            F theta[kRows][kTiles] = {};
            for (size_t k = 0; k < q; ++k) {
                F hk[kTiles];
                for (size_t v = 0; v < kTiles; ++v) hk[v] = load<F>(p.hT + k * lanes + t + v * W);
                for (size_t r = 0; r < kRows; ++r) {
                    const float x = rows[r][k];
                    for (size_t v = 0; v < kTiles; ++v) theta[r][v] += hk[v] * x;
                }
            }
            // Each stage for every cell of the step before the next stage: the cells' long dependency chains
            // (exp, log1p and the reciprocal are a dozen dependent multiply-adds each) then overlap.
            F e[kRows][kTiles], s[kRows][kTiles], g[kRows][kTiles];
            for (size_t r = 0; r < kRows; ++r)
                for (size_t v = 0; v < kTiles; ++v)  // e^−|Θ|: the sign bit set
                    e[r][v] = exp_nonpositive<V>((F)((U)theta[r][v] | 0x80000000u));
            for (size_t r = 0; r < kRows; ++r)
                for (size_t v = 0; v < kTiles; ++v) {
                    U shared = {};
                    for (size_t w = 0; w < words; ++w)
                        shared |= load<U>(p.labelsT + w * lanes + t + v * W) & row_labels[r][w];
                    s[r][v] = shared != 0u ? 1.0f : 0.0f;
                }
            F terms = {};
            for (size_t v = 0; v < kTiles; ++v) {
                F column = {};
                for (size_t r = 0; r < kRows; ++r) {
                    const F th = theta[r][v];  // softplus(Θ) − sΘ = log(1 + e^−|Θ|) + max(Θ, 0) − sΘ
                    column += (log1p_unit<V>(e[r][v]) + vmax(th, F{}) - s[r][v] * th) * row_valid[r];
                }
                terms += column * load<F>(p.valid + t + v * W);
            }
            typename V::H low, high;  // widened half by half: a double vector of W lanes is not native
            std::memcpy(&low, &terms, sizeof low);
            std::memcpy(&high, reinterpret_cast<const char*>(&terms) + sizeof low, sizeof high);
            totals += __builtin_convertvector(low, typename V::D) + __builtin_convertvector(high, typename V::D);
            for (size_t r = 0; r < kRows; ++r)
                for (size_t v = 0; v < kTiles; ++v) {
                    // σ(−|Θ|) = e/(1 + e), σ(|Θ|) = 1 − σ(−|Θ|): a saturated σ is exactly 1
                    const F tail = e[r][v] * reciprocal_1_2<V>(1.0f + e[r][v]);
                    g[r][v] = (theta[r][v] >= 0.0f ? 1.0f - tail : tail) - s[r][v];  // σ(Θ) − s
                }
            for (size_t k = 0; k < q; ++k) {
                F acc[kTiles];
                for (size_t v = 0; v < kTiles; ++v) acc[v] = load<F>(gT + k * lanes + t + v * W);
                for (size_t r = 0; r < kRows; ++r) {
                    const float x = rows[r][k];
                    for (size_t v = 0; v < kTiles; ++v) acc[v] += g[r][v] * x;
                }
                for (size_t v = 0; v < kTiles; ++v) store(gT + k * lanes + t + v * W, acc[v]);
            }
        }
    }
    double sum = 0;
    for (size_t l = 0; l < W / 2; ++l) sum += totals[l];
    return sum;
}

// Each path twice: for one label word (up to 32 classes: the inner loop gone) and for any number.
#if defined(__x86_64__) || defined(__i386__)
template <size_t Words>
__attribute__((target("avx512f,avx512dq,prefer-vector-width=512"), flatten))
double chunk_avx512(const Problem& p, size_t r0, size_t r1, float* gT) {
    return chunk_body<Vec<16, 8>, Words>(p, r0, r1, gT);
}

template <size_t Words>
__attribute__((target("avx2,fma")))
double chunk_avx2(const Problem& p, size_t r0, size_t r1, float* gT) {
    return chunk_body<Vec<8, 4>, Words>(p, r0, r1, gT);
}
#endif

template <size_t Words>
double chunk_generic(const Problem& p, size_t r0, size_t r1, float* gT) {
    return chunk_body<Vec<4, 8>, Words>(p, r0, r1, gT);
}

using ChunkFn = double (*)(const Problem&, size_t, size_t, float*);

template <size_t Words>
ChunkFn chunk_kernel() {
#if defined(__x86_64__) || defined(__i386__)
    switch (active_isa()) {
        case Isa::Avx512: return chunk_avx512<Words>;
        case Isa::Avx2: return __builtin_cpu_supports("fma") ? chunk_avx2<Words> : chunk_generic<Words>;
        default: break;
    }
#endif
    return chunk_generic<Words>;
}

}  // namespace

double bank_likelihood(const float* h, size_t b, const float* bank, size_t n, size_t q, const uint32_t* labels,
                       const uint32_t* bank_labels, size_t words, float* grad, int threads) {
    const size_t lanes = (b + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
    std::vector<float> hT(q * lanes, 0.0f), valid(lanes, 0.0f), zero_row(q, 0.0f);
    std::vector<uint32_t> labelsT(words * lanes, 0u), zero_labels(words, 0u);
    for (size_t i = 0; i < b; ++i) {
        valid[i] = 1.0f;
        for (size_t k = 0; k < q; ++k) hT[k * lanes + i] = h[i * q + k];
        for (size_t w = 0; w < words; ++w) labelsT[w * lanes + i] = labels[i * words + w];
    }
    const Problem p{hT.data(), labelsT.data(), valid.data(), lanes, bank, bank_labels, n, q, words,
                    zero_row.data(), zero_labels.data()};
    // chunks fixed by n (at most 64, of whole steps): the same partial sums, added in the same order, whatever
    // the thread count
    const size_t chunk = (std::max<size_t>(2048, (n + 63) / 64) + kMaxRows - 1) / kMaxRows * kMaxRows;
    const size_t chunks = (n + chunk - 1) / chunk;
    std::vector<float> partial_g(chunks * q * lanes, 0.0f);
    std::vector<double> partial(chunks, 0.0);
    const ChunkFn kernel = words == 1 ? chunk_kernel<1>() : chunk_kernel<0>();
#pragma omp parallel for schedule(dynamic, 1) num_threads(resolve_threads(threads))
    for (size_t c = 0; c < chunks; ++c)
        partial[c] = kernel(p, c * chunk, std::min(n, (c + 1) * chunk), partial_g.data() + c * q * lanes);
    double total = 0;
    std::vector<float> gT(q * lanes, 0.0f);
    for (size_t c = 0; c < chunks; ++c) {
        total += partial[c];
        const float* pg = partial_g.data() + c * q * lanes;
        for (size_t x = 0; x < q * lanes; ++x) gT[x] += pg[x];
    }
    for (size_t i = 0; i < b; ++i)
        for (size_t k = 0; k < q; ++k) grad[i * q + k] = gT[k * lanes + i];
    return total;
}

}  // namespace shc
