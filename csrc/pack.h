// Rows of values to rows of bits in uint64 words: the engine's input form for codes and label matrices
// (shc.codes checks the input and chooses the rule; this does the pass over every value, on all threads).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shc {

enum class BitRule { NonZero, NonNegative };  // {0,1} / bool values, or signs with sign(0) = +1
// Column c's bit: c % 64 of word c / 64 (LSB first: label bitmaps), or, with msb_first, np.packbits' order viewed
// as little-endian words (bit 7 - c % 8 of byte c / 8: codes). Unused bits of the last word are 0.
enum class BitOrder { LsbFirst, MsbFirst };

template <class T>  // bool, int8_t, uint8_t, int16_t, int32_t, int64_t, float, double
void pack_rows(const T* values, size_t rows, size_t cols, BitRule rule, BitOrder order, int threads, uint64_t* out);

}  // namespace shc
