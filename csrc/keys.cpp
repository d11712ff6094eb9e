#include "keys.h"

namespace shc {

namespace {

int64_t finish_one_by_one(const uint16_t* keys, size_t i, unsigned d, int64_t m, int64_t seen, int64_t relevant) {
    for (; seen < m; ++i) {
        if (key_bucket(keys[i]) != d) continue;
        ++seen;
        relevant += key_relevant(keys[i]);
    }
    return relevant;
}

#ifdef SHC_KEYS_X86
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

int64_t relevant_in_bucket_prefix(const uint16_t* keys, size_t begin, size_t count, unsigned d, int64_t m,
                                  int64_t seen, int64_t relevant) {
#ifdef SHC_KEYS_X86
    if (keys_use_avx2()) return prefix_avx2(keys, begin, count, d, m, seen, relevant);
#endif
    (void)count;
    return finish_one_by_one(keys, begin, d, m, seen, relevant);
}

}  // namespace shc
