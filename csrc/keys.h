// Per-item ranking keys and the vector searches over them.
//
// The scan gives every database item of a query one key, (distance << 1) | relevant, in index order.
// The `index`-ties walks look only for some keys (those up to a bucket, or those of one bucket); AVX2 tests 16
// keys at once, so the keys they skip cost a fraction of a cycle each. Each search has a scalar twin (the
// generic/popcnt paths), chosen with the active ISA (hamming.h) so that tests run both.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hamming.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SHC_KEYS_X86 1
#endif

namespace shc {

inline uint16_t make_key(unsigned distance, bool relevant) { return static_cast<uint16_t>(distance << 1 | relevant); }
inline unsigned key_bucket(uint16_t key) { return key >> 1u; }
inline bool key_relevant(uint16_t key) { return key & 1u; }

inline bool keys_use_avx2() { return static_cast<int>(active_isa()) >= static_cast<int>(Isa::Avx2); }

// Copies the keys <= limit of keys[0..count) to out, in order, and returns how many there are. out must have room
// for count + 8 keys (the vector path stores 8 at a time). Branch-free: the walks that use it select a few
// percent of the keys, scattered, where a branch per selected key would mispredict almost every time.
size_t select_keys_at_most(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out);

// Walking keys[begin..] in index order, from `seen` items of bucket d of which `relevant` are relevant, up to
// the m-th item of bucket d (which must exist): returns the relevant items among those m.
int64_t relevant_in_bucket_prefix(const uint16_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant);

}  // namespace shc
