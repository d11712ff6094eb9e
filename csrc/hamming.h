// Hamming distance kernels and their run-time ISA dispatch.
//
// Codes are packed row-major into 64-bit words: item i occupies words [i*words, (i+1)*words).
// A kernel writes out[i] = popcount(query XOR db_i) for n consecutive database items.
#pragma once
#include <cstddef>
#include <cstdint>

namespace shc {

using HammingFn = void (*)(const uint64_t* query, const uint64_t* db, size_t n, size_t words, uint16_t* out);

enum class Isa : int { Generic = 0, Popcnt = 1, Avx2 = 2, Avx512 = 3 };

// Per-ISA kernel tables (each specialised for a few widths, 1, 2, 4 words and more, plus a generic loop).
HammingFn hamming_generic(size_t words);
HammingFn hamming_popcnt(size_t words);
HammingFn hamming_avx2(size_t words);
HammingFn hamming_avx512(size_t words);

Isa best_isa();                  // the fastest path this CPU supports
Isa active_isa();                // the path evaluate/search use now
void set_isa(Isa isa);           // throws std::invalid_argument when the CPU lacks it
const char* isa_name(Isa isa);
Isa isa_from_name(const char* name);  // throws std::invalid_argument on unknown names
HammingFn hamming_kernel(size_t words);  // kernel of the active path for this code width

}  // namespace shc
