#include "scan.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SHC_HAVE_X86 1
#endif

namespace shc {

namespace {

#if defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define SHC_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SHC_VECTOR_CLONES
#endif

constexpr size_t kBlock = 1024;  // database items per block: distances and flags stay in L1 between steps

// flag[i] = 1 when database item begin + i is relevant to the query. Plain loops over restrict pointers, so the
// compiler vectorises them; the AVX2 clone (chosen at load time) has the 64-bit compares SSE2 lacks.
SHC_VECTOR_CLONES void relevance_flags(const Labels& db, const Labels& query, size_t query_index, size_t begin,
                                       size_t count, uint8_t* __restrict flag) {
    if (db.ids != nullptr) {
        const int32_t qid = query.ids[query_index];
        const int32_t* __restrict ids = db.ids + begin;
        for (size_t i = 0; i < count; ++i) flag[i] = ids[i] == qid;
        return;
    }
    const size_t words = db.words;
    const uint64_t* qb = query.bitmaps + query_index * words;
    const uint64_t* __restrict rows = db.bitmaps + begin * words;
    if (words == 1) {
        const uint64_t q0 = qb[0];
        for (size_t i = 0; i < count; ++i) flag[i] = (rows[i] & q0) != 0;
    } else if (words == 2) {
        const uint64_t q0 = qb[0], q1 = qb[1];
        for (size_t i = 0; i < count; ++i) flag[i] = ((rows[2 * i] & q0) | (rows[2 * i + 1] & q1)) != 0;
    } else {
        for (size_t i = 0; i < count; ++i) {
            uint64_t shared = 0;
            for (size_t w = 0; w < words; ++w) shared |= rows[i * words + w] & qb[w];
            flag[i] = shared != 0;
        }
    }
}

// key[i] = (distance << 1) | relevant: one histogram slot per (distance, relevant) pair
SHC_VECTOR_CLONES void histogram_keys(uint16_t* __restrict dist, const uint8_t* __restrict flag, size_t count) {
    for (size_t i = 0; i < count; ++i) dist[i] = static_cast<uint16_t>((dist[i] << 1) | flag[i]);
}

// Index-order positions of the relevant items of one block, and the block's per-distance counts.
// next[d] = (items at distance d so far) << 16 | d: the packed RelevantItems entry of the next item at distance
// d, so recording is a copy. A relevant item's position in its bucket is the count before the block plus the
// items of the same distance before it in the block. Returns the new list length.
constexpr uint64_t kOneItem = uint64_t(1) << 16;

// Portable version: running counts, branchless append (always written, kept only when relevant).
size_t record_block_scalar(const uint16_t* __restrict dist, const uint8_t* __restrict flag, size_t count,
                           uint64_t* __restrict next, uint64_t* __restrict items, size_t found) {
#pragma GCC unroll 4
    for (size_t i = 0; i < count; ++i) {
        const uint64_t entry = next[dist[i]];
        next[dist[i]] = entry + kOneItem;
        items[found] = entry;
        found += flag[i];
    }
    return found;
}

#ifdef SHC_HAVE_X86
// AVX2 version: only relevant items pay for a position — in chunks of 128 items, a relevant item at offset t
// counts the equal distances before it with vector compares — and the counts are a plain histogram.
// Faster when few items are relevant (single-label with many classes); the caller picks per block.
constexpr size_t kChunk = 128;  // dist must stay readable up to the end of the last chunk

__attribute__((target("avx2,popcnt,bmi"))) size_t record_block_avx2(const uint16_t* __restrict dist,
                                                                    const uint8_t* __restrict flag, size_t count,
                                                                    uint64_t* __restrict next,
                                                                    uint64_t* __restrict items, size_t found) {
    for (size_t start = 0; start < count; start += kChunk) {
        const size_t len = std::min(kChunk, count - start);
        const uint16_t* d = dist + start;
        for (size_t w = 0; w < len; w += 32) {
            const __m256i f = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(flag + start + w));
            uint32_t mask = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi8(f, _mm256_setzero_si256())));
            if (len - w < 32) mask &= (uint32_t(1) << (len - w)) - 1;
            while (mask) {
                const size_t t = w + static_cast<size_t>(__builtin_ctz(mask));
                mask &= mask - 1;
                const uint16_t value = d[t];
                const __m256i v = _mm256_set1_epi16(static_cast<short>(value));
                unsigned same = 0;
                size_t k = 0;
                for (; k + 16 <= t; k += 16) {
                    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + k));
                    same += static_cast<unsigned>(__builtin_popcount(_mm256_movemask_epi8(_mm256_cmpeq_epi16(x, v))));
                }
                if (k < t) {  // the partial vector: lanes k .. t-1 (two mask bits per uint16 lane)
                    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + k));
                    const uint32_t eq = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi16(x, v)));
                    same += static_cast<unsigned>(__builtin_popcount(eq & ((uint32_t(1) << (2 * (t - k))) - 1)));
                }
                items[found++] = next[value] + (same / 2) * kOneItem;
            }
        }
#pragma GCC unroll 4
        for (size_t i = 0; i < len; ++i) next[d[i]] += kOneItem;
    }
    return found;
}
#endif

}  // namespace

QueryScanner::QueryScanner(const Database& db, bool record_relevant)
    : db_(db), hamming_(hamming_kernel(db.words)), record_(record_relevant), buckets_(size_t(db.bits) + 1),
      // padded so that vector loads of the last 128-item chunk and the 32-flag masks stay inside the buffers
      distance_(kBlock + 32), flag_(kBlock + 32), count_(kBatch * 2 * buckets_), next_(kBatch * buckets_),
      relevant_(kBatch) {
#ifdef SHC_HAVE_X86
    vector_record_ = static_cast<int>(active_isa()) >= static_cast<int>(Isa::Avx2);
#endif
}

void QueryScanner::scan(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count,
                        int64_t* n, int64_t* r) {
    std::fill(count_.begin(), count_.end(), 0u);
    for (size_t j = 0; j < count; ++j) {
        relevant_[j].count = 0;
        for (size_t d = 0; d < buckets_; ++d) next_[j * buckets_ + d] = d;  // no items yet: (0 << 16) | d
    }
    uint16_t* __restrict dist = distance_.data();
    uint8_t* __restrict flag = flag_.data();
    for (size_t begin = 0; begin < db_.n; begin += kBlock) {
        const size_t m = std::min(kBlock, db_.n - begin);
        for (size_t j = 0; j < count; ++j) {
            const size_t qi = first + j;
            uint32_t* __restrict counter = count_.data() + j * 2 * buckets_;
            hamming_(query_codes + qi * db_.words, db_.codes + begin * db_.words, m, db_.words, dist);
            relevance_flags(db_.labels, query_labels, qi, begin, m, flag);
            if (!record_) {
                histogram_keys(dist, flag, m);
#pragma GCC unroll 4
                for (size_t i = 0; i < m; ++i) ++counter[dist[i]];
                continue;
            }
            RelevantItems& rel = relevant_[j];
            if (rel.items.size() < rel.count + m) rel.items.resize(std::max(rel.items.size() * 2, rel.count + m));
#ifdef SHC_HAVE_X86
            // the vector path pays ~two branch misses per relevant item: worth it only when few are relevant
            size_t relevant_in_block = 0;
            for (size_t i = 0; i < m; ++i) relevant_in_block += flag[i];
            if (vector_record_ && relevant_in_block * 12 < m) {
                rel.count = record_block_avx2(dist, flag, m, next_.data() + j * buckets_, rel.items.data(), rel.count);
                continue;
            }
#endif
            rel.count = record_block_scalar(dist, flag, m, next_.data() + j * buckets_, rel.items.data(), rel.count);
        }
    }
    for (size_t j = 0; j < count; ++j) {
        const uint32_t* counter = count_.data() + j * 2 * buckets_;
        int64_t* nj = n + j * buckets_;
        int64_t* rj = r + j * buckets_;
        if (record_) {
            for (size_t d = 0; d < buckets_; ++d) nj[d] = int64_t(next_[j * buckets_ + d] >> 16);
            std::fill(rj, rj + buckets_, 0);
            const RelevantItems& rel = relevant_[j];
            for (size_t k = 0; k < rel.count; ++k) ++rj[RelevantItems::bucket(rel.items[k])];
        } else {
            for (size_t d = 0; d < buckets_; ++d) {
                nj[d] = int64_t(counter[2 * d]) + counter[2 * d + 1];
                rj[d] = counter[2 * d + 1];
            }
        }
    }
}

void scan_distances(const Database& db, HammingFn hamming, const uint64_t* query_code, uint16_t* distance,
                    int64_t* n) {
    std::fill(n, n + db.bits + 1, 0);
    for (size_t begin = 0; begin < db.n; begin += kBlock) {
        const size_t m = std::min(kBlock, db.n - begin);
        uint16_t* d = distance + begin;
        hamming(query_code, db.codes + begin * db.words, m, db.words, d);
        for (size_t i = 0; i < m; ++i) ++n[d[i]];
    }
}

}  // namespace shc
