// Scalar kernels: one XOR + popcount per word. The same template body is compiled twice: without target
// options (portable bit-twiddling popcount) and with target("popcnt") (the POPCNT instruction).
#include "hamming.h"

namespace shc {

namespace {

template <size_t W>  // W = 0: width known only at run time
inline void hamming_rows(const uint64_t* query, const uint64_t* db, size_t n, size_t words, uint16_t* out) {
    const size_t width = W ? W : words;
    if constexpr (W == 1) {  // unrolled: the loop overhead would otherwise match the work
        const uint64_t q0 = query[0];
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            out[i] = static_cast<uint16_t>(__builtin_popcountll(q0 ^ db[i]));
            out[i + 1] = static_cast<uint16_t>(__builtin_popcountll(q0 ^ db[i + 1]));
            out[i + 2] = static_cast<uint16_t>(__builtin_popcountll(q0 ^ db[i + 2]));
            out[i + 3] = static_cast<uint16_t>(__builtin_popcountll(q0 ^ db[i + 3]));
        }
        for (; i < n; ++i) out[i] = static_cast<uint16_t>(__builtin_popcountll(q0 ^ db[i]));
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        const uint64_t* row = db + i * width;
        unsigned d = 0;
        for (size_t w = 0; w < width; ++w) d += static_cast<unsigned>(__builtin_popcountll(query[w] ^ row[w]));
        out[i] = static_cast<uint16_t>(d);
    }
}

template <size_t W>
void generic_kernel(const uint64_t* q, const uint64_t* db, size_t n, size_t words, uint16_t* out) {
    hamming_rows<W>(q, db, n, words, out);
}

#if defined(__x86_64__) || defined(__i386__)
#define SHC_TARGET_POPCNT __attribute__((target("popcnt")))
#else
#define SHC_TARGET_POPCNT
#endif

template <size_t W>
SHC_TARGET_POPCNT void popcnt_kernel(const uint64_t* q, const uint64_t* db, size_t n, size_t words, uint16_t* out) {
    hamming_rows<W>(q, db, n, words, out);
}

}  // namespace

HammingFn hamming_generic(size_t words) {
    switch (words) {
        case 1: return generic_kernel<1>;
        case 2: return generic_kernel<2>;
        case 4: return generic_kernel<4>;
        case 8: return generic_kernel<8>;
        case 16: return generic_kernel<16>;
        default: return generic_kernel<0>;
    }
}

HammingFn hamming_popcnt(size_t words) {
    switch (words) {
        case 1: return popcnt_kernel<1>;
        case 2: return popcnt_kernel<2>;
        case 4: return popcnt_kernel<4>;
        case 8: return popcnt_kernel<8>;
        case 16: return popcnt_kernel<16>;
        default: return popcnt_kernel<0>;
    }
}

}  // namespace shc
