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

// Bit i of out[j kBlockWords, + kBlockWords): item begin + i shares a label with query first + j, for the
// queries of a batch; with `prefetch`, the same labels' bitsets of the next block are requested meanwhile (a
// block's bitsets of all labels span kilobytes, and the few the batch reads are not in a pattern the hardware
// prefetcher follows).
void relevant_bits(const Database& db, const Labels& query, size_t first, size_t count, size_t begin,
                   bool prefetch, uint64_t* __restrict out) {
    const size_t label_words = db.labels.words, block_words = 64 * label_words * kBlockWords;
    const uint64_t* block = db.items_by_label + (begin / kBlock) * block_words;
    for (size_t j = 0; j < count; ++j, out += kBlockWords) {
        uint64_t bits[kBlockWords] = {};
        for (size_t w = 0; w < label_words; ++w)
            for (uint64_t labels = query.bitmaps[(first + j) * label_words + w]; labels != 0; labels &= labels - 1) {
                const uint64_t* __restrict items = block + (64 * w + size_t(__builtin_ctzll(labels))) * kBlockWords;
                for (size_t k = 0; k < kBlockWords; ++k) bits[k] |= items[k];
                if (prefetch)
                    for (size_t k = 0; k < kBlockWords; k += 8) __builtin_prefetch(items + block_words + k);
            }
        std::copy(bits, bits + kBlockWords, out);
    }
}

void sum_sub_histograms(const uint32_t* hist, size_t width, uint32_t* out) {
    for (size_t x = 0; x < width; ++x) out[x] = hist[x] + hist[width + x] + hist[2 * width + x] + hist[3 * width + x];
}

// how many of distance[0, 64) are at most cut (a plain reduction the compiler vectorises)
SHC_VECTOR_CLONES unsigned count_at_most(const uint16_t* __restrict distance, uint16_t cut) {
    unsigned count = 0;
    for (size_t i = 0; i < 64; ++i) count += distance[i] <= cut;
    return count;
}

}  // namespace

template <class Key>
QueryScanner<Key>::QueryScanner(const Database& db, bool keep_keys)
    : db_(db), hamming_(hamming_kernel(db.words)), batch_(nullptr), keep_(keep_keys), buckets_(size_t(db.bits) + 1),
      count_(kBatch * kSubHistograms * 2 * buckets_) {
    if constexpr (std::is_same_v<Key, uint8_t>) batch_ = batch_key_kernel(db);  // byte keys only
    if (batch_ != nullptr) {
        tables_.resize(kBatch * db.code_bytes * 2 * kGroup);
        if (!keep_) batch_keys_.resize(2 * kBatch * kBlock);  // the current block's and the pending block's
    } else if (!keep_) {
        block_keys_.resize(kBlock);
    }
    if (!keep_) return;
    key_stride_ = (db.n * sizeof(Key) + kCacheLine - 1) / kCacheLine * kCacheLine / sizeof(Key);
    keys_.resize(kBatch * key_stride_);
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
    if (batch_ != nullptr)
        scan_batch(query_codes, query_labels, first, count);
    else
        scan_each(query_codes, query_labels, first, count);
    std::vector<uint32_t> total(width);
    for (size_t j = 0; j < count; ++j) {
        sum_sub_histograms(count_.data() + j * kSubHistograms * width, width, total.data());
        for (size_t d = 0; d < buckets_; ++d) {
            n[j * buckets_ + d] = int64_t(total[2 * d]) + total[2 * d + 1];
            r[j * buckets_ + d] = total[2 * d + 1];
        }
    }
}

// The generic path, query by query: Hamming kernel, keys, histogram (4 sub-histograms).
template <class Key>
void QueryScanner<Key>::scan_each(const uint64_t* query_codes, const Labels& query_labels, size_t first,
                                  size_t count) {
    const size_t width = 2 * buckets_;
    alignas(64) uint16_t dist[kBlock];
    for (size_t begin = 0; begin < db_.n; begin += kBlock) {
        const size_t m = std::min(kBlock, db_.n - begin);
        for (size_t j = 0; j < count; ++j) {
            uint32_t* hist = count_.data() + j * kSubHistograms * width;
            Key* key = keep_ ? keys_.data() + j * key_stride_ + begin : block_keys_.data();
            if (keep_ && begin % segment_ == 0)  // every key of this query before `begin` is counted by now
                sum_sub_histograms(hist, width, marks_.data() + (j * segments_ + begin / segment_) * width);
            hamming_(query_codes + (first + j) * db_.words, db_.codes + begin * db_.words, m, db_.words, dist);
            make_keys(db_.labels, query_labels, first + j, begin, m, dist, key);
            count_keys(key, 0, m, hist, width);
        }
    }
}

// The batch kernel: all the batch's keys of a block per call, the previous block's counted meanwhile.
template <class Key>
void QueryScanner<Key>::scan_batch(const uint64_t* query_codes, const Labels& query_labels, size_t first,
                                   size_t count) {
    const size_t width = 2 * buckets_;
    alignas(64) uint64_t relevant[kBatch * kBlockWords];
    alignas(64) uint16_t query_ids[kBatch] = {};
    BatchBlock block;
    block.tables = tables_.data();
    block.relevant = relevant;
    block.query_ids = query_ids;
    // unused slots of a short batch: any query's tables; their keys and counts (count_'s spare rows, zeroed by
    // scan) are never read
    for (size_t j = 0; j < kBatch; ++j) {
        const size_t qi = first + std::min(j, count - 1);
        nibble_tables(reinterpret_cast<const uint8_t*>(query_codes + qi * db_.words), db_.code_bytes,
                      tables_.data() + j * db_.code_bytes * 2 * kGroup);
        // database ids are < kNoClass here (batch_kernel_fits), so a larger query id matches no item
        if (query_labels.ids != nullptr)
            query_ids[j] = uint16_t(std::min<uint32_t>(uint32_t(query_labels.ids[qi]), kNoClass));
    }
    PendingKeys pending;
    for (size_t j = 0; j < kBatch; ++j) pending.hist[j] = count_.data() + j * kSubHistograms * width;
    size_t blocks = 0;
    for (size_t begin = 0; begin < db_.n; begin += kBlock, ++blocks) {
        block.begin = begin;
        block.count = std::min(kBlock, db_.n - begin);
        // kept keys go straight to their rows, the next block's requested for writing meanwhile (without that,
        // copying the keys out of an L1-resident buffer measured faster); others to a double buffer
        const bool more = begin + kBlock < db_.n;
        for (size_t j = 0; j < kBatch; ++j) {
            block.keys[j] =
                keep_ ? kept_byte_keys(j) + begin : batch_keys_.data() + ((blocks % 2) * kBatch + j) * kBlock;
            block.next_keys[j] = keep_ && more ? block.keys[j] + kBlock : nullptr;
        }
        if (query_labels.bitmaps != nullptr) relevant_bits(db_, query_labels, first, count, begin, more, relevant);
        batch_(db_, block, pending);
        // the previous block's keys are counted now: every key of the batch before `begin`
        if (keep_ && begin % segment_ == 0)  // (the kernel counts into the first sub-histogram only)
            for (size_t j = 0; j < count; ++j)
                std::copy_n(count_.data() + j * kSubHistograms * width, width,
                            marks_.data() + (j * segments_ + begin / segment_) * width);
        std::copy_n(block.keys, kBatch, pending.keys);
        pending.count = block.count;
    }
    count_pending(pending, 0, pending.count);  // the last block
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

void scan_distances(const Database& db, HammingFn hamming, const uint64_t* query_codes, size_t count,
                    uint16_t* distance, int64_t* n) {
    const size_t width = size_t(db.bits) + 1;
    std::fill(n, n + count * width, 0);
    for (size_t begin = 0; begin < db.n; begin += kBlock) {
        const size_t m = std::min(kBlock, db.n - begin);
        for (size_t j = 0; j < count; ++j) {
            uint16_t* d = distance + j * db.n + begin;
            hamming(query_codes + j * db.words, db.codes + begin * db.words, m, db.words, d);
            int64_t* hist = n + j * width;
            for (size_t i = 0; i < m; ++i) ++hist[d[i]];
        }
    }
}

void top_k_by_distance(const uint16_t* distance, const int64_t* n, size_t N, size_t k, size_t width, int64_t* slot,
                       int64_t* indices, int32_t* distances) {
    // bucket d's items go to slots from slot[d]; the cut-off bucket takes only its first (k - items before it)
    int64_t placed = 0;
    size_t cut = 0;
    for (; cut < width; ++cut) {
        slot[cut] = placed;
        placed += n[cut];
        if (placed >= int64_t(k)) break;
    }
    int64_t filled = 0;
    auto place = [&](size_t from, size_t to) {
        for (size_t i = from; i < to && filled < int64_t(k); ++i) {
            const size_t d = distance[i];
            if (d > cut) continue;
            const int64_t s = slot[d];
            if (d == cut && s >= int64_t(k)) continue;
            slot[d] = s + 1;
            indices[s] = int64_t(i);
            distances[s] = int32_t(d);
            ++filled;
        }
    };
    // k << N: most runs of 64 items hold none of the k, and a vector test skips them
    size_t i = 0;
    for (; i + 64 <= N && filled < int64_t(k); i += 64)
        if (count_at_most(distance + i, uint16_t(cut)) != 0) place(i, i + 64);
    place(i, N);
}

}  // namespace shc
