// One pass over the database for a batch of queries: Hamming distances, relevance and the per-distance histogram.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hamming.h"
#include "keys.h"

namespace shc {

// Relevance labels: class ids (single-label) or label bitmaps packed into `words` uint64 per row
// (multi-label; relevant when the bitmaps share a bit). Both null: no relevance (search).
struct Labels {
    const int32_t* ids = nullptr;
    const uint64_t* bitmaps = nullptr;
    size_t words = 0;
};

struct Database {
    const uint64_t* codes = nullptr;  // n x words
    size_t n = 0;
    size_t words = 0;
    int bits = 0;  // q: distances are 0..q
    Labels labels;
    // Optional label-major copy of the bitmaps (with_items_by_label): label l's items are the bits of
    // items_by_label[l * item_words, (l + 1) * item_words), item i at bit i % 64 of word i / 64.
    const uint64_t* items_by_label = nullptr;
    size_t item_words = 0;
};

// db, with items_by_label built into `storage` where the fused kernels use it (AVX2, codes of one word, label
// bitmaps of one or two words): a query's relevance to a block of items is then the OR of its labels' bitsets —
// a few words per 64 items for the usual handful of labels per query — instead of an AND and a narrowing of
// every item's label row. Costs 64 x label words x N / 8 bytes, N x labels-per-item bit sets to build.
Database with_items_by_label(const Database& db, std::vector<uint64_t>& storage);

// Sub-histograms interleaved by item (item i counts in sub-histogram i % 4, `width` keys each): equal
// neighbouring keys do not chain their increments.
constexpr size_t kSubHistograms = 4;

// hist[(i % 4) width + keys[i]] += 1 for i in [from, to) (up to which sub-histogram an item lands in)
template <class Key>
inline void count_keys(const Key* keys, size_t from, size_t to, uint32_t* hist, size_t width) {
    static_assert(kSubHistograms == 4, "the byte-key loop below spreads eight keys over four sub-histograms");
    size_t i = from;
    if constexpr (sizeof(Key) == 1) {
        // eight byte keys per load: in the fused kernels' loop the load ports, not the adds, run short
        uint32_t *h0 = hist, *h1 = hist + width, *h2 = hist + 2 * width, *h3 = hist + 3 * width;
        for (; i + 8 <= to; i += 8) {
            uint64_t k;
            std::memcpy(&k, keys + i, sizeof k);
            ++h0[k & 0xff], ++h1[(k >> 8) & 0xff], ++h2[(k >> 16) & 0xff], ++h3[(k >> 24) & 0xff];
            ++h0[(k >> 32) & 0xff], ++h1[(k >> 40) & 0xff], ++h2[(k >> 48) & 0xff], ++h3[k >> 56];
        }
    }
    for (; i + kSubHistograms <= to; i += kSubHistograms)
        for (size_t s = 0; s < kSubHistograms; ++s) ++hist[s * width + keys[i + s]];
    for (; i < to; ++i) ++hist[(i % kSubHistograms) * width + keys[i]];
}

// Keys still to be counted: the previous query's keys of the block, counted by the next kernel call.
struct PendingKeys {
    const uint8_t* keys = nullptr;
    size_t count = 0;
    uint32_t* hist = nullptr;  // kSubHistograms x width
    size_t width = 0;
};

// One query's keys (keys.h) for database items [begin, begin + count) in a single pass (distance and relevance
// fused), while counting `pending` (keys computed earlier, already in L1) into their histogram: the vector work
// of the keys and the scalar increments of the counts overlap in one loop. (Counting a loop's own keys through
// registers measured 1.8x slower; counting them in a second loop leaves the vector units idle meanwhile.)
// fused_key_kernel() gives one where it fits the database (scan_avx2.cpp: AVX2, 64-bit codes — byte keys —,
// class ids, or label bitmaps of one or two words with items_by_label), else null, and the scan runs the Hamming
// kernel, make_keys and count_keys.
// Label bitmaps need db.items_by_label: `relevant` then holds the query's relevance to items [begin, begin + count)
// as bits (item begin + i at bit i % 64 of word i / 64); class ids ignore it.
using KeyKernel = void (*)(const uint64_t* query_codes, const Labels& query_labels, size_t query_index,
                           const Database& db, size_t begin, size_t count, const uint64_t* relevant, uint8_t* keys,
                           const PendingKeys& pending);
KeyKernel fused_key_kernel(const Database& db);
bool fused_keys_fit(const Database& db);  // a fused kernel exists for db (given items_by_label for bitmaps)

// Largest q the engine supports (keys distance << 1 | relevant are held in uint16).
constexpr int kMaxBits = 32767;

// Per-thread scratch and the pass itself. Queries are scanned in batches of up to kBatch: each database block
// (codes and labels) is read once from memory and used for every query of the batch while it sits in cache.
// For query j of the batch: n[j (q+1) + d], r[j (q+1) + d] are the item and relevant-item counts at distance d.
// keep_keys (`index` ties): keys(j) holds every item's key (keys.h) in index order, and the cumulative
// histogram is marked every `segment` items, so relevant_in_prefix() walks at most one segment.
// Memory: kBatch x N keys and marks of about the same size — O(N) per thread. Key: uint8_t for q <=
// kMaxByteKeyBits, else uint16_t (keys.h).
template <class Key>
class QueryScanner {
public:
    static constexpr size_t kBatch = 8;
    explicit QueryScanner(const Database& db, bool keep_keys = false);
    void scan(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count, int64_t* n,
              int64_t* r);
    const Key* keys(size_t j) const { return keys_.data() + j * db_.n; }
    // relevant items among the first m items (1 <= m <= n_d, bucket d's size) of bucket d in index order, query j
    // of the batch
    int64_t relevant_in_prefix(size_t j, unsigned d, int64_t m, int64_t n_d) const;

private:
    const Database& db_;
    HammingFn hamming_;
    KeyKernel fused_;
    bool keep_;
    size_t buckets_;
    size_t segment_ = 0, segments_ = 0;  // items per mark (a multiple of the block), number of marks
    std::vector<Key> block_keys_;        // two blocks, when not keeping keys
    std::vector<Key> keys_;              // kBatch x N, when keeping keys
    std::vector<uint32_t> count_;        // kBatch x 4 interleaved sub-histograms x 2 (q + 1) keys
    std::vector<uint32_t> marks_;        // kBatch x segments x 2 (q + 1): key histogram before each segment
};

extern template class QueryScanner<uint8_t>;
extern template class QueryScanner<uint16_t>;

// Distances of one query to every database item, in index order, and their histogram (search).
void scan_distances(const Database& db, HammingFn hamming, const uint64_t* query_code, uint16_t* distance,
                    int64_t* n);

}  // namespace shc
