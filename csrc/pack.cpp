#include "pack.h"

#include <algorithm>
#include <cstring>

#include "evaluate.h"  // resolve_threads

namespace shc {

namespace {

// reverses the bit order inside every byte (LSB-first columns -> np.packbits' MSB-first bytes)
inline uint64_t reverse_bits_in_bytes(uint64_t x) {
    x = (x >> 1 & 0x5555555555555555ull) | (x & 0x5555555555555555ull) << 1;
    x = (x >> 2 & 0x3333333333333333ull) | (x & 0x3333333333333333ull) << 2;
    return (x >> 4 & 0x0f0f0f0f0f0f0f0full) | (x & 0x0f0f0f0f0f0f0f0full) << 4;
}

// bits of up to 64 values, value i at bit i: the rule's 0/1 per value as bytes first (a compare loop the compiler
// vectorises for every type), then eight bytes at a time gathered into eight bits by one multiply (the partial
// products land on distinct bits, so nothing carries)
template <BitRule rule, class T>
inline uint64_t word_of(const T* v, size_t count) {
    alignas(8) uint8_t set[64] = {};
    for (size_t i = 0; i < count; ++i) set[i] = rule == BitRule::NonZero ? v[i] != T(0) : !(v[i] < T(0));
    uint64_t bits = 0;
    for (size_t g = 0; g < 8; ++g) {
        uint64_t eight;
        std::memcpy(&eight, set + 8 * g, sizeof eight);
        bits |= (eight * 0x0102040810204080ull >> 56) << (8 * g);
    }
    return bits;
}

template <BitRule rule, class T>
void pack_with(const T* values, size_t rows, size_t cols, BitOrder order, int threads, uint64_t* out) {
    const size_t words = (cols + 63) / 64;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long long r = 0; r < static_cast<long long>(rows); ++r) {
        const T* row = values + size_t(r) * cols;
        for (size_t w = 0; w < words; ++w) {
            const uint64_t bits = word_of<rule>(row + 64 * w, std::min<size_t>(64, cols - 64 * w));
            out[size_t(r) * words + w] = order == BitOrder::MsbFirst ? reverse_bits_in_bytes(bits) : bits;
        }
    }
}

}  // namespace

template <class T>
void pack_rows(const T* values, size_t rows, size_t cols, BitRule rule, BitOrder order, int threads, uint64_t* out) {
    threads = resolve_threads(threads);
    if (rule == BitRule::NonZero)
        pack_with<BitRule::NonZero>(values, rows, cols, order, threads, out);
    else
        pack_with<BitRule::NonNegative>(values, rows, cols, order, threads, out);
}

template void pack_rows(const bool*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const int8_t*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const uint8_t*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const int16_t*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const int32_t*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const int64_t*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const float*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);
template void pack_rows(const double*, size_t, size_t, BitRule, BitOrder, int, uint64_t*);

}  // namespace shc
