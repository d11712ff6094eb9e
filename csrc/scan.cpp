#include "scan.h"

#include <algorithm>
#include <type_traits>

namespace shc {

namespace {

#if defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define SHC_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SHC_VECTOR_CLONES
#endif

constexpr size_t kBlock = 1024;  // database items per block: distances stay in L1 between the two steps

// key[i] = distance[i] << 1 | (database item begin + i relevant to the query). Plain loops over restrict
// pointers, so the compiler vectorises them; the AVX2 clone (chosen at load time) has the 64-bit compares SSE2 lacks.
template <class Key>
SHC_VECTOR_CLONES void make_keys(const Labels& db, const Labels& query, size_t query_index, size_t begin, size_t count,
                                 const uint16_t* __restrict dist, Key* __restrict key) {
    if (db.ids != nullptr) {
        const int32_t qid = query.ids[query_index];
        const int32_t* __restrict ids = db.ids + begin;
        for (size_t i = 0; i < count; ++i) key[i] = static_cast<Key>(dist[i] << 1 | (ids[i] == qid));
        return;
    }
    const size_t words = db.words;
    const uint64_t* qb = query.bitmaps + query_index * words;
    const uint64_t* __restrict rows = db.bitmaps + begin * words;
    if (words == 1) {
        const uint64_t q0 = qb[0];
        for (size_t i = 0; i < count; ++i) key[i] = static_cast<Key>(dist[i] << 1 | ((rows[i] & q0) != 0));
    } else if (words == 2) {
        const uint64_t q0 = qb[0], q1 = qb[1];
        for (size_t i = 0; i < count; ++i)
            key[i] = static_cast<Key>(dist[i] << 1 | (((rows[2 * i] & q0) | (rows[2 * i + 1] & q1)) != 0));
    } else {
        for (size_t i = 0; i < count; ++i) {
            uint64_t shared = 0;
            for (size_t w = 0; w < words; ++w) shared |= rows[i * words + w] & qb[w];
            key[i] = static_cast<Key>(dist[i] << 1 | (shared != 0));
        }
    }
}

// bit i of out: item begin + i (begin a multiple of 64) shares a label with query qi
void relevant_bits(const Database& db, const Labels& query, size_t qi, size_t begin, size_t count, uint64_t* out) {
    const size_t words = (count + 63) / 64, first = begin / 64, label_words = db.labels.words;
    std::fill(out, out + words, uint64_t(0));
    for (size_t w = 0; w < label_words; ++w)
        for (uint64_t labels = query.bitmaps[qi * label_words + w]; labels != 0; labels &= labels - 1) {
            const size_t label = 64 * w + size_t(__builtin_ctzll(labels));
            const uint64_t* items = db.items_by_label + label * db.item_words + first;
            for (size_t k = 0; k < words; ++k) out[k] |= items[k];
        }
}

void sum_sub_histograms(const uint32_t* hist, size_t width, uint32_t* out) {
    for (size_t x = 0; x < width; ++x) out[x] = hist[x] + hist[width + x] + hist[2 * width + x] + hist[3 * width + x];
}

}  // namespace

Database with_items_by_label(const Database& db, std::vector<uint64_t>& storage) {
    Database out = db;
    if (!fused_keys_fit(db) || db.labels.bitmaps == nullptr) return out;  // no fused kernel, or class ids
    out.item_words = (db.n + 63) / 64;
    storage.assign(64 * db.labels.words * out.item_words, 0);
    for (size_t i = 0; i < db.n; ++i)
        for (size_t w = 0; w < db.labels.words; ++w)
            for (uint64_t labels = db.labels.bitmaps[i * db.labels.words + w]; labels != 0; labels &= labels - 1)
                storage[(64 * w + size_t(__builtin_ctzll(labels))) * out.item_words + i / 64] |= uint64_t(1) << (i % 64);
    out.items_by_label = storage.data();
    return out;
}

template <class Key>
QueryScanner<Key>::QueryScanner(const Database& db, bool keep_keys)
    : db_(db), hamming_(hamming_kernel(db.words)), fused_(nullptr), keep_(keep_keys), buckets_(size_t(db.bits) + 1),
      count_(kBatch * kSubHistograms * 2 * buckets_) {
    if constexpr (std::is_same_v<Key, uint8_t>) fused_ = fused_key_kernel(db);
    if (!keep_) {
        block_keys_.resize(2 * kBlock);  // two queries' keys: the current one's and the pending ones
        return;
    }
    keys_.resize(kBatch * db.n);
    // marks cost 2 (q + 1) counters each: one per block, or fewer (longer segments) so that they take about
    // as much memory as the keys
    const size_t blocks = (db.n + kBlock - 1) / kBlock;
    const size_t mark_bytes = 2 * buckets_ * sizeof(uint32_t);
    const size_t budget = std::max<size_t>(db.n * sizeof(Key), 1 << 16);
    const size_t blocks_per_segment = std::max<size_t>(1, (blocks * mark_bytes + budget - 1) / budget);
    segment_ = blocks_per_segment * kBlock;
    segments_ = (db.n + segment_ - 1) / segment_;
    marks_.resize(kBatch * segments_ * 2 * buckets_);
}

template <class Key>
void QueryScanner<Key>::scan(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count,
                        int64_t* n, int64_t* r) {
    std::fill(count_.begin(), count_.end(), 0u);
    const size_t width = 2 * buckets_;
    alignas(64) uint16_t dist[kBlock];
    alignas(64) uint64_t relevant[kBlock / 64];
    const bool by_label = db_.items_by_label != nullptr;
    PendingKeys pending;  // counted by the next kernel call, the next block's first query's for the last query
    pending.width = width;
    size_t calls = 0;
    for (size_t begin = 0; begin < db_.n; begin += kBlock) {
        const size_t m = std::min(kBlock, db_.n - begin);
        for (size_t j = 0; j < count; ++j) {
            const size_t qi = first + j;
            uint32_t* hist = count_.data() + j * kSubHistograms * width;
            // not keeping keys: the two halves of block_keys_ alternate, so the pending keys stay intact
            Key* key = keep_ ? keys_.data() + j * db_.n + begin : block_keys_.data() + (++calls % 2) * kBlock;
            if (keep_ && begin % segment_ == 0)  // every key of this query before `begin` is counted by now
                sum_sub_histograms(hist, width, marks_.data() + (j * segments_ + begin / segment_) * width);
            if constexpr (std::is_same_v<Key, uint8_t>) {
                if (fused_ != nullptr) {
                    if (by_label) relevant_bits(db_, query_labels, qi, begin, m, relevant);
                    fused_(query_codes, query_labels, qi, db_, begin, m, relevant, key, pending);
                    pending = PendingKeys{key, m, hist, width};
                    continue;
                }
            }
            {
                hamming_(query_codes + qi * db_.words, db_.codes + begin * db_.words, m, db_.words, dist);
                make_keys(db_.labels, query_labels, qi, begin, m, dist, key);
                count_keys(key, 0, m, hist, width);
            }
        }
    }
    count_keys(pending.keys, 0, pending.count, pending.hist, width);  // the last block's last query
    std::vector<uint32_t> total(width);
    for (size_t j = 0; j < count; ++j) {
        sum_sub_histograms(count_.data() + j * kSubHistograms * width, width, total.data());
        for (size_t d = 0; d < buckets_; ++d) {
            n[j * buckets_ + d] = int64_t(total[2 * d]) + total[2 * d + 1];
            r[j * buckets_ + d] = total[2 * d + 1];
        }
    }
}

template <class Key>
int64_t QueryScanner<Key>::relevant_in_prefix(size_t j, unsigned d, int64_t m, int64_t n_d) const {
    const size_t width = 2 * buckets_;
    const uint32_t* marks = marks_.data() + j * segments_ * width + 2 * d;  // keys 2d, 2d + 1 of segment 0
    auto items_before = [&](size_t s) { return int64_t(marks[s * width]) + marks[s * width + 1]; };
    // the segment holding the m-th item: the last one that starts with fewer than m items of bucket d behind it
    // (segment 0 starts with none). A bucket's items are usually spread evenly over the index order, so the search
    // starts at the proportional guess and gallops from there: two or three marks read instead of log2(segments)
    // (each a likely cache miss).
    size_t lo = 0, hi = segments_;  // items_before(lo) < m; the answer is below hi
    const size_t guess = size_t(uint64_t(m - 1) * segments_ / uint64_t(n_d));
    if (items_before(guess) < m) {
        lo = guess;
        for (size_t step = 1; lo + step < hi; step *= 2) {
            if (items_before(lo + step) >= m) {
                hi = lo + step;
                break;
            }
            lo += step;
        }
    } else {
        hi = guess;
        for (size_t step = 1; hi - lo > step; step *= 2) {
            if (items_before(hi - step) < m) {
                lo = hi - step;
                break;
            }
            hi -= step;
        }
    }
    while (hi - lo > 1) {
        const size_t mid = (lo + hi) / 2;
        (items_before(mid) < m ? lo : hi) = mid;
    }
    return relevant_in_bucket_prefix(keys(j), lo * segment_, db_.n, d, m, items_before(lo), marks[lo * width + 1]);
}

template class QueryScanner<uint8_t>;
template class QueryScanner<uint16_t>;

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
