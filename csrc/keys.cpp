#include "keys.h"

#include <array>

namespace shc {

namespace {

template <class Key>
size_t select_scalar(const Key* keys, size_t count, Key limit, Key* out) {
    size_t m = 0;
    for (size_t i = 0; i < count; ++i) {
        out[m] = keys[i];
        m += keys[i] <= limit;
    }
    return m;
}

template <class Key>
size_t bucket_relevance_scalar(const Key* keys, size_t count, unsigned d, uint8_t* out) {
    size_t m = 0;
    for (size_t i = 0; i < count; ++i) {
        out[m] = static_cast<uint8_t>(key_relevant(keys[i]));
        m += key_bucket(keys[i]) == d;
    }
    return m;
}

template <class Key>
int64_t finish_one_by_one(const Key* keys, size_t i, unsigned d, int64_t m, int64_t seen, int64_t relevant) {
    for (; seen < m; ++i) {
        if (key_bucket(keys[i]) != d) continue;
        ++seen;
        relevant += key_relevant(keys[i]);
    }
    return relevant;
}

#ifdef SHC_KEYS_X86
#define SHC_KEYS_AVX2 __attribute__((target("avx2,popcnt")))

// LEFT_PACK<w>[mask]: the vpshufb control moving the w-byte lanes set in an 8-bit mask to the front, in order
// (the rest zeroed)
template <size_t w>
const std::array<std::array<uint8_t, 8 * w>, 256> LEFT_PACK = [] {
    std::array<std::array<uint8_t, 8 * w>, 256> table{};
    for (unsigned mask = 0; mask < 256; ++mask) {
        unsigned slot = 0;
        for (unsigned lane = 0; lane < 8; ++lane) {
            if (!(mask >> lane & 1u)) continue;
            for (size_t b = 0; b < w; ++b) table[mask][w * slot + b] = uint8_t(w * lane + b);
            ++slot;
        }
        for (size_t b = w * slot; b < 8 * w; ++b) table[mask][b] = 0x80;
    }
    return table;
}();

// the lanes of x (eight keys in its low 8 w bytes) set in the 8-bit mask, stored at out
SHC_KEYS_AVX2 inline void pack8(__m128i x, unsigned mask, uint16_t* out) {
    const __m128i control = _mm_loadu_si128(reinterpret_cast<const __m128i*>(LEFT_PACK<2>[mask].data()));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_shuffle_epi8(x, control));
}

SHC_KEYS_AVX2 inline void pack8(__m128i x, unsigned mask, uint8_t* out) {
    const __m128i control = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(LEFT_PACK<1>[mask].data()));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_shuffle_epi8(x, control));
}

// Left-packs the lanes of a vector set in `mask` (one bit per lane) to out and returns how many: 16 two-byte
// lanes, 16 bytes (a 128-bit vector) or 32 bytes. Every group's store address comes from its own popcount, so
// the stores do not wait on each other.
SHC_KEYS_AVX2 inline size_t left_pack(__m256i x, unsigned mask, uint16_t* out) {
    pack8(_mm256_castsi256_si128(x), mask & 0xffu, out);
    pack8(_mm256_extracti128_si256(x, 1), mask >> 8, out + __builtin_popcount(mask & 0xffu));
    return size_t(__builtin_popcount(mask));
}

SHC_KEYS_AVX2 inline size_t left_pack(__m128i x, unsigned mask, uint8_t* out) {
    pack8(x, mask & 0xffu, out);
    pack8(_mm_srli_si128(x, 8), mask >> 8, out + __builtin_popcount(mask & 0xffu));
    return size_t(__builtin_popcount(mask));
}

SHC_KEYS_AVX2 inline size_t left_pack(__m256i x, uint32_t mask, uint8_t* out) {
    left_pack(_mm256_castsi256_si128(x), mask & 0xffffu, out);
    left_pack(_mm256_extracti128_si256(x, 1), mask >> 16, out + __builtin_popcount(mask & 0xffffu));
    return size_t(__builtin_popcount(mask));
}

// one mask bit per 16-bit lane of a compare result (the lanes saturated to bytes)
SHC_KEYS_AVX2 inline unsigned lane_mask(__m256i compare16) {
    return unsigned(_mm_movemask_epi8(
        _mm_packs_epi16(_mm256_castsi256_si128(compare16), _mm256_extracti128_si256(compare16, 1))));
}

// 16 two-byte keys at a time; key <= limit (unsigned): min(key, limit) == key
SHC_KEYS_AVX2 size_t select_avx2(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out) {
    const __m256i lim = _mm256_set1_epi16(static_cast<short>(limit));
    size_t i = 0, m = 0;
    for (; i + 16 <= count; i += 16) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
        m += left_pack(x, lane_mask(_mm256_cmpeq_epi16(_mm256_min_epu16(x, lim), x)), out + m);
    }
    return m + select_scalar(keys + i, count - i, limit, out + m);
}

// 32 one-byte keys at a time
SHC_KEYS_AVX2 size_t select_avx2(const uint8_t* keys, size_t count, uint8_t limit, uint8_t* out) {
    const __m256i lim = _mm256_set1_epi8(static_cast<char>(limit));
    size_t i = 0, m = 0;
    for (; i + 32 <= count; i += 32) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
        m += left_pack(x, uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(x, lim), x))), out + m);
    }
    return m + select_scalar(keys + i, count - i, limit, out + m);
}

// 32 one-byte keys at a time: key | 1 == 2d + 1 selects bucket d, key & 1 is the byte written
SHC_KEYS_AVX2 size_t bucket_relevance_avx2(const uint8_t* keys, size_t count, unsigned d, uint8_t* out) {
    const __m256i one = _mm256_set1_epi8(1), odd = _mm256_set1_epi8(static_cast<char>(make_key<uint8_t>(d, true)));
    size_t i = 0, m = 0;
    for (; i + 32 <= count; i += 32) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
        const uint32_t in = uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_or_si256(x, one), odd)));
        m += left_pack(_mm256_and_si256(x, one), in, out + m);
    }
    return m + bucket_relevance_scalar(keys + i, count - i, d, out + m);
}

// 16 two-byte keys at a time, the relevance narrowed to bytes
SHC_KEYS_AVX2 size_t bucket_relevance_avx2(const uint16_t* keys, size_t count, unsigned d, uint8_t* out) {
    const __m256i one = _mm256_set1_epi16(1);
    const __m256i odd = _mm256_set1_epi16(static_cast<short>(make_key<uint16_t>(d, true)));
    size_t i = 0, m = 0;
    for (; i + 16 <= count; i += 16) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
        const __m256i relevant = _mm256_and_si256(x, one);
        const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(relevant), _mm256_extracti128_si256(relevant, 1));
        m += left_pack(bytes, lane_mask(_mm256_cmpeq_epi16(_mm256_or_si256(x, one), odd)), out + m);
    }
    return m + bucket_relevance_scalar(keys + i, count - i, d, out + m);
}

// one mask bit per key equal to a (16-bit keys: movemask gives two bits per key; keep the even ones)
SHC_KEYS_AVX2 inline uint32_t equal_keys(const uint16_t* keys, __m256i a) {
    const __m256i eq = _mm256_cmpeq_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys)), a);
    return uint32_t(_mm256_movemask_epi8(eq)) & 0x55555555u;
}
SHC_KEYS_AVX2 inline uint32_t equal_keys(const uint8_t* keys, __m256i a) {
    return uint32_t(_mm256_movemask_epi8(
        _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys)), a)));
}
SHC_KEYS_AVX2 inline __m256i broadcast(uint16_t key) { return _mm256_set1_epi16(static_cast<short>(key)); }
SHC_KEYS_AVX2 inline __m256i broadcast(uint8_t key) { return _mm256_set1_epi8(static_cast<char>(key)); }

// the bits of x up to and including its n-th set bit (1 <= n <= popcount(x)); n is small here (a bucket's items
// in one vector), so clearing the lowest bits one by one beats a per-key branch, which mispredicts
inline uint32_t through_nth_set_bit(uint32_t x, int64_t n) {
    for (; n > 1; --n) x &= x - 1;
    return x ^ (x - 1);
}

// one vector of keys (32 bytes) at a time: the items of bucket d are keys 2d and 2d + 1
template <class Key>
SHC_KEYS_AVX2 int64_t prefix_avx2(const Key* keys, size_t begin, size_t count, unsigned d, int64_t m, int64_t seen,
                                  int64_t relevant) {
    constexpr size_t step = 32 / sizeof(Key);
    const __m256i other = broadcast(make_key<Key>(d, false)), hit = broadcast(make_key<Key>(d, true));
    size_t i = begin;
    for (; i + step <= count; i += step) {
        const uint32_t relevant_mask = equal_keys(keys + i, hit);
        const uint32_t items = equal_keys(keys + i, other) | relevant_mask;
        const int64_t c = __builtin_popcount(items);
        if (seen + c >= m)  // the m-th item is among these: count the relevant ones up to it from the masks
            return relevant + __builtin_popcount(relevant_mask & through_nth_set_bit(items, m - seen));
        seen += c;
        relevant += __builtin_popcount(relevant_mask);
    }
    return finish_one_by_one(keys, i, d, m, seen, relevant);
}
#endif

template <class Key>
int64_t prefix_scalar(const Key* keys, size_t begin, size_t, unsigned d, int64_t m, int64_t seen, int64_t relevant) {
    return finish_one_by_one(keys, begin, d, m, seen, relevant);
}

// The key searches of the active path: the AVX-512 BW + VBMI2 twins where there are some and the CPU has them,
// else AVX2, else scalar — the one place that chooses.
template <class Key>
struct KeySearches {
    size_t (*select)(const Key*, size_t, Key, Key*) = select_scalar<Key>;
    size_t (*bucket_relevance)(const Key*, size_t, unsigned, uint8_t*) = bucket_relevance_scalar<Key>;
    int64_t (*prefix)(const Key*, size_t, size_t, unsigned, int64_t, int64_t, int64_t) = prefix_scalar<Key>;

    static KeySearches active() {
        KeySearches s;
#ifdef SHC_KEYS_X86
        if (keys_use_avx2()) {
            s.select = select_avx2;
            s.bucket_relevance = bucket_relevance_avx2;
            s.prefix = prefix_avx2<Key>;
        }
        if (keys_use_avx512()) {
            s.select = select_avx512<Key>;
            s.bucket_relevance = bucket_relevance_avx512<Key>;
        }
#endif
        return s;
    }
};

}  // namespace

size_t select_keys_at_most(const uint8_t* keys, size_t count, uint8_t limit, uint8_t* out) {
    return KeySearches<uint8_t>::active().select(keys, count, limit, out);
}
size_t select_keys_at_most(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out) {
    return KeySearches<uint16_t>::active().select(keys, count, limit, out);
}

size_t bucket_relevance(const uint8_t* keys, size_t count, unsigned d, uint8_t* out) {
    return KeySearches<uint8_t>::active().bucket_relevance(keys, count, d, out);
}
size_t bucket_relevance(const uint16_t* keys, size_t count, unsigned d, uint8_t* out) {
    return KeySearches<uint16_t>::active().bucket_relevance(keys, count, d, out);
}

int64_t relevant_in_bucket_prefix(const uint8_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant) {
    return KeySearches<uint8_t>::active().prefix(keys, begin, count, d, m, seen, relevant);
}
int64_t relevant_in_bucket_prefix(const uint16_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant) {
    return KeySearches<uint16_t>::active().prefix(keys, begin, count, d, m, seen, relevant);
}

}  // namespace shc
