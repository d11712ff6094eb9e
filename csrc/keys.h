// Per-item ranking keys and the vector searches over them.
//
// The scan gives every database item of a query one key, (distance << 1) | relevant, in index order.
// The `index`-ties walks look only for some keys (those up to a bucket, or those of one bucket); AVX2 tests 32
// byte keys (16 two-byte ones) at once, so the keys they skip cost a fraction of a cycle each. Each search has a
// scalar twin (the generic/popcnt paths), chosen with the active ISA (hamming.h) so that tests run both.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hamming.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SHC_KEYS_X86 1
#endif

namespace shc {

// Keys are bytes when every key fits one (q <= kMaxByteKeyBits: 2q + 1 <= 255), else uint16_t: half the
// memory traffic and twice the keys per vector for the usual code lengths.
constexpr int kMaxByteKeyBits = 127;

template <class Key>
inline Key make_key(unsigned distance, bool relevant) { return static_cast<Key>(distance << 1 | relevant); }
inline unsigned key_bucket(unsigned key) { return key >> 1u; }
inline bool key_relevant(unsigned key) { return key & 1u; }

inline bool keys_use_avx2() { return static_cast<int>(active_isa()) >= static_cast<int>(Isa::Avx2); }

#ifdef SHC_KEYS_X86
// The AVX-512 BW + VBMI2 twins of select_keys_at_most and bucket_relevance (keys_avx512.cpp, instantiated for
// uint8_t and uint16_t keys), used when the active path is avx512 and the CPU has those extensions too
#define SHC_KEYS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")))
bool keys_use_avx512();
template <class Key>
SHC_KEYS_AVX512 size_t select_avx512(const Key* keys, size_t count, Key limit, Key* out);
template <class Key>
SHC_KEYS_AVX512 size_t bucket_relevance_avx512(const Key* keys, size_t count, unsigned d, uint8_t* out);
#endif

// Copies the keys <= limit of keys[0..count) to out, in order, and returns how many there are. out must have room
// for count + 8 keys (the AVX2 path stores 8 at a time). Branch-free: the walks that use it select a few
// percent of the keys, scattered, where a branch per selected key would mispredict almost every time.
size_t select_keys_at_most(const uint8_t* keys, size_t count, uint8_t limit, uint8_t* out);
size_t select_keys_at_most(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out);

// Writes key & 1 (relevant: 1 byte each) of the keys of bucket d among keys[0..count) to out, in order, and
// returns how many there are. out must have room for that many + 8 bytes.
size_t bucket_relevance(const uint8_t* keys, size_t count, unsigned d, uint8_t* out);
size_t bucket_relevance(const uint16_t* keys, size_t count, unsigned d, uint8_t* out);

// Walking keys[begin..] in index order, from `seen` items of bucket d of which `relevant` are relevant, up to
// the m-th item of bucket d (which must exist): returns the relevant items among those m.
int64_t relevant_in_bucket_prefix(const uint8_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant);
int64_t relevant_in_bucket_prefix(const uint16_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant);

}  // namespace shc
