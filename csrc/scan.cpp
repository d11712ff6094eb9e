#include "scan.h"

#include <algorithm>

namespace shc {

namespace {

#if defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define SHC_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SHC_VECTOR_CLONES
#endif

constexpr size_t kBlock = 1024;  // database items per block: distances and increments stay in L1 between steps

constexpr uint64_t kRelevantOne = uint64_t(1) << 32;

// inc[i] = 1 + (relevant << 32): what item i adds to its bucket's packed (items | relevant << 32) counter.
// Plain loops over restrict pointers, so the compiler vectorises them; the AVX2 clone (chosen at load time)
// has the 64-bit compares SSE2 lacks.
SHC_VECTOR_CLONES void relevance_increments(const Labels& db, const Labels& query, size_t query_index, size_t begin, size_t count,
                          uint64_t* __restrict inc) {
    if (db.ids != nullptr) {
        const int32_t qid = query.ids[query_index];
        const int32_t* __restrict ids = db.ids + begin;
        for (size_t i = 0; i < count; ++i) inc[i] = 1 + (uint64_t(ids[i] == qid) << 32);
        return;
    }
    const size_t words = db.words;
    const uint64_t* qb = query.bitmaps + query_index * words;
    const uint64_t* __restrict rows = db.bitmaps + begin * words;
    if (words == 1) {
        const uint64_t q0 = qb[0];
        for (size_t i = 0; i < count; ++i) inc[i] = 1 + (uint64_t((rows[i] & q0) != 0) << 32);
    } else if (words == 2) {
        const uint64_t q0 = qb[0], q1 = qb[1];
        for (size_t i = 0; i < count; ++i)
            inc[i] = 1 + (uint64_t(((rows[2 * i] & q0) | (rows[2 * i + 1] & q1)) != 0) << 32);
    } else {
        for (size_t i = 0; i < count; ++i) {
            uint64_t shared = 0;
            for (size_t w = 0; w < words; ++w) shared |= rows[i * words + w] & qb[w];
            inc[i] = 1 + (uint64_t(shared != 0) << 32);
        }
    }
}

}  // namespace

QueryScanner::QueryScanner(const Database& db, bool record_relevant)
    : db_(db), hamming_(hamming_kernel(db.words)), record_(record_relevant), buckets_(size_t(db.bits) + 1),
      distance_(kBlock), increment_(kBlock), count_(kBatch * buckets_), relevant_(kBatch) {}

void QueryScanner::scan(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count,
                        int64_t* n, int64_t* r) {
    std::fill(count_.begin(), count_.end(), 0);
    for (size_t j = 0; j < count; ++j) relevant_[j].count = 0;
    uint16_t* dist = distance_.data();
    uint64_t* inc = increment_.data();
    for (size_t begin = 0; begin < db_.n; begin += kBlock) {
        const size_t m = std::min(kBlock, db_.n - begin);
        for (size_t j = 0; j < count; ++j) {
            const size_t qi = first + j;
            uint64_t* counter = count_.data() + j * buckets_;
            hamming_(query_codes + qi * db_.words, db_.codes + begin * db_.words, m, db_.words, dist);
            relevance_increments(db_.labels, query_labels, qi, begin, m, inc);
            if (!record_) {
                for (size_t i = 0; i < m; ++i) counter[dist[i]] += inc[i];
                continue;
            }
            // the bucket's running item count before an item is its position under index-order ties; the list
            // append is branchless (always written, kept only when the item is relevant)
            RelevantItems& rel = relevant_[j];
            if (rel.items.size() < rel.count + m) rel.items.resize(std::max(rel.items.size() * 2, rel.count + m));
            uint64_t* __restrict items = rel.items.data();
            size_t found = rel.count;
            for (size_t i = 0; i < m; ++i) {
                const uint16_t d = dist[i];
                const uint64_t c = counter[d];
                counter[d] = c + inc[i];
                items[found] = (c << 32) | d;  // low 32 bits of c: items of bucket d so far
                found += inc[i] >> 32;
            }
            rel.count = found;
        }
    }
    for (size_t j = 0; j < count; ++j)
        for (size_t d = 0; d < buckets_; ++d) {
            const uint64_t c = count_[j * buckets_ + d];
            n[j * buckets_ + d] = static_cast<int64_t>(c & 0xFFFFFFFFu);
            r[j * buckets_ + d] = static_cast<int64_t>(c >> 32);
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
