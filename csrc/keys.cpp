#include "keys.h"

#include <array>

namespace shc {

namespace {

size_t select_scalar(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out) {
    size_t m = 0;
    for (size_t i = 0; i < count; ++i) {
        out[m] = keys[i];
        m += keys[i] <= limit;
    }
    return m;
}

int64_t finish_one_by_one(const uint16_t* keys, size_t i, unsigned d, int64_t m, int64_t seen, int64_t relevant) {
    for (; seen < m; ++i) {
        if (key_bucket(keys[i]) != d) continue;
        ++seen;
        relevant += key_relevant(keys[i]);
    }
    return relevant;
}

#ifdef SHC_KEYS_X86
// LEFT_PACK[mask]: the vpshufb control moving the 16-bit lanes set in an 8-bit mask to the front, in order
const std::array<std::array<uint8_t, 16>, 256> LEFT_PACK = [] {
    std::array<std::array<uint8_t, 16>, 256> table{};
    for (unsigned mask = 0; mask < 256; ++mask) {
        unsigned slot = 0;
        for (unsigned lane = 0; lane < 8; ++lane) {
            if (!(mask >> lane & 1u)) continue;
            table[mask][2 * slot] = uint8_t(2 * lane);
            table[mask][2 * slot + 1] = uint8_t(2 * lane + 1);
            ++slot;
        }
        for (; slot < 8; ++slot) table[mask][2 * slot] = table[mask][2 * slot + 1] = 0x80;  // zero the rest
    }
    return table;
}();

__attribute__((target("avx2,popcnt"))) inline size_t pack8(__m128i x, unsigned mask, uint16_t* out) {
    const __m128i control = _mm_loadu_si128(reinterpret_cast<const __m128i*>(LEFT_PACK[mask].data()));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_shuffle_epi8(x, control));
    return size_t(__builtin_popcount(mask));
}

__attribute__((target("avx2,popcnt"))) size_t select_avx2(const uint16_t* keys, size_t count, uint16_t limit,
                                                           uint16_t* out) {
    const __m256i lim = _mm256_set1_epi16(static_cast<short>(limit));
    size_t i = 0, m = 0;
    for (; i + 16 <= count; i += 16) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
        // key <= limit (unsigned) as one mask bit per key: min(key, limit) == key, 16-bit lanes saturated to bytes
        const __m256i le = _mm256_cmpeq_epi16(_mm256_min_epu16(x, lim), x);
        const unsigned mask = unsigned(_mm_movemask_epi8(_mm_packs_epi16(_mm256_castsi256_si128(le),
                                                                         _mm256_extracti128_si256(le, 1))));
        m += pack8(_mm256_castsi256_si128(x), mask & 0xffu, out + m);
        m += pack8(_mm256_extracti128_si256(x, 1), mask >> 8, out + m);
    }
    return m + select_scalar(keys + i, count - i, limit, out + m);
}

// 16 keys at a time: items of bucket d are the keys <= 2d + 1 minus those <= 2d - 1
__attribute__((target("avx2,popcnt"))) int64_t prefix_avx2(const uint16_t* keys, size_t begin, size_t count,
                                                             unsigned d, int64_t m, int64_t seen, int64_t relevant) {
    const __m256i bucket = _mm256_set1_epi16(static_cast<short>(make_key(d, false)));
    const __m256i relevant_key = _mm256_set1_epi16(static_cast<short>(make_key(d, true)));
    size_t i = begin;
    for (; i + 16 <= count; i += 16) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
        const __m256i in = _mm256_or_si256(_mm256_cmpeq_epi16(x, bucket), _mm256_cmpeq_epi16(x, relevant_key));
        const int64_t c = __builtin_popcount(static_cast<uint32_t>(_mm256_movemask_epi8(in))) / 2;
        if (seen + c >= m) break;  // the m-th item is among these 16
        seen += c;
        relevant += __builtin_popcount(static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi16(x, relevant_key)))) / 2;
    }
    return finish_one_by_one(keys, i, d, m, seen, relevant);
}
#endif

}  // namespace

size_t select_keys_at_most(const uint16_t* keys, size_t count, uint16_t limit, uint16_t* out) {
#ifdef SHC_KEYS_X86
    if (keys_use_avx2()) return select_avx2(keys, count, limit, out);
#endif
    return select_scalar(keys, count, limit, out);
}

int64_t relevant_in_bucket_prefix(const uint16_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant) {
#ifdef SHC_KEYS_X86
    if (keys_use_avx2()) return prefix_avx2(keys, begin, count, d, m, seen, relevant);
#endif
    (void)count;
    return finish_one_by_one(keys, begin, d, m, seen, relevant);
}

}  // namespace shc
