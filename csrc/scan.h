// One pass over the database for a batch of queries: Hamming distances, relevance and the per-distance histogram.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
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
    // The batch kernel's copies of the database (with_scan_layout); null where it does not fit.
    const uint8_t* grouped_codes = nullptr;  // byte b of item 32 g + i at [(g code_bytes + b) 32 + i]
    size_t code_bytes = 0;
    const uint16_t* grouped_ids = nullptr;   // class ids by 32-item group, in the kernel's order (scan_avx2.cpp)
    // label bitmaps as item bitsets block by block: label l's items of block k (items k kBlock + i) are the
    // bits of items_by_label[(k label_count + l) kBlockWords, + kBlockWords), item i at bit i % 64 of word i / 64
    const uint64_t* items_by_label = nullptr;
};

constexpr size_t kBlock = 1024;  // database items per block: a block's codes, labels and keys stay in L1
constexpr size_t kBlockWords = kBlock / 64;
constexpr size_t kGroup = 32;    // items per vector of byte keys
constexpr size_t kBatch = 4;     // queries scanned together: each block is read once per batch

// Vectors whose data starts on a cache line: a block's 128-byte label bitset then spans two lines, not three, and
// the batch kernel's 32-byte key stores never straddle two.
constexpr size_t kCacheLine = 64;
template <class T>
struct CacheLineAllocator {
    using value_type = T;
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine))); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(kCacheLine)); }
    template <class U>
    bool operator==(const CacheLineAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Storage of with_scan_layout's copies.
struct ScanLayout {
    AlignedVector<uint8_t> codes;
    AlignedVector<uint16_t> ids;
    AlignedVector<uint64_t> items_by_label;
};

// db with the batch kernel's copies built into `storage` where the kernel fits (batch_kernel_fits): the codes
// regrouped so that one vector holds the same byte of 32 items (N x code_bytes bytes), and class ids as uint16
// (2N bytes) or label bitmaps as item bitsets (64 x label words x N / 8 bytes), so that a query's relevance to
// a block is the OR of its few labels' bitsets instead of an AND and a narrowing of every item's label row.
Database with_scan_layout(const Database& db, ScanLayout& storage, int threads);
// AVX2, q <= kMaxByteKeyBits (byte keys), and class ids < kNoClass or label bitmaps of one or two words
bool batch_kernel_fits(const Database& db);
constexpr uint32_t kNoClass = 0xffff;  // the batch kernel's class ids are uint16: this one is no item's

// One block of the batch kernel: the keys (keys.h) of kBatch queries for items [begin, begin + count).
struct BatchBlock {
    const uint8_t* tables = nullptr;      // kBatch x code_bytes x {low, high nibble} x 32 bytes (nibble_tables)
    const uint16_t* query_ids = nullptr;  // kBatch class ids (class-id relevance)
    const uint64_t* relevant = nullptr;   // kBatch x kBlockWords relevance bits (label bitmaps: relevant_bits)
    size_t begin = 0, count = 0;
    uint8_t* keys[kBatch] = {};           // where each query's keys of the block go
    // kept keys: where the next block's keys will go, requested for writing while this block is computed (so that
    // the stores find their lines in cache, without a burst of requests that would delay the other loads); or null
    uint8_t* next_keys[kBatch] = {};
};

// The previous block's keys, counted by the next kernel call: hist[j][keys[j][i]] += 1 for i < count.
struct PendingKeys {
    const uint8_t* keys[kBatch] = {};
    uint32_t* hist[kBatch] = {};
    size_t count = 0;
};

// The batch kernel (scan_avx2.cpp), as in PQ fast-scan: a query's distance to an item is the sum over the code's
// nibbles of a 16-entry table (doubled popcount of the query nibble XOR each value), looked up by vpshufb for
// 32 items at once on the regrouped codes. Each code byte is loaded and split into nibbles once for the whole
// batch, and the distances come out as bytes in item order: no per-item popcount, lane sum or packing (twice
// the keys per vector op of a popcount kernel). After every 4 groups of 32 items it counts those groups of the
// pending keys of every query (count_pending), so the scalar increments overlap the vector work of the next ones.
using BatchKernel = void (*)(const Database& db, const BatchBlock& block, const PendingKeys& pending);
BatchKernel batch_key_kernel(const Database& db);  // for a db made by with_scan_layout; null where none fits
// keys [from, to) of every query, the queries' increments interleaved: their histograms are independent, so
// no increment waits on the previous one to the same counter (the generic path uses sub-histograms instead)
void count_pending(const PendingKeys& pending, size_t from, size_t to);
// tables for query code `code` (code_bytes bytes) into out (code_bytes x 2 x 32 bytes)
void nibble_tables(const uint8_t* code, size_t code_bytes, uint8_t* out);

// Sub-histograms interleaved by item (item i counts in sub-histogram i % 4, `width` keys each): equal
// neighbouring keys do not chain their increments.
constexpr size_t kSubHistograms = 4;

// hist[(i % 4) width + keys[i]] += 1 for i in [from, to) (up to which sub-histogram an item lands in)
template <class Key>
inline void count_keys(const Key* keys, size_t from, size_t to, uint32_t* hist, size_t width) {
    static_assert(kSubHistograms == 4, "the byte-key loop below spreads eight keys over four sub-histograms");
    size_t i = from;
    if constexpr (sizeof(Key) == 1) {
        // eight byte keys per load: fewer loads beside the increments
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
    static constexpr size_t kBatch = shc::kBatch;
    explicit QueryScanner(const Database& db, bool keep_keys = false);
    void scan(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count, int64_t* n,
              int64_t* r);
    const Key* keys(size_t j) const { return keys_.data() + j * key_stride_; }
    // the batch kernel's keys are bytes (it runs for Key = uint8_t only)
    uint8_t* kept_byte_keys(size_t j) { return reinterpret_cast<uint8_t*>(keys_.data() + j * key_stride_); }
    // relevant items among the first m items (1 <= m <= n_d, bucket d's size) of bucket d in index order, query j
    // of the batch
    int64_t relevant_in_prefix(size_t j, unsigned d, int64_t m, int64_t n_d) const;

private:
    void scan_each(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count);
    void scan_batch(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count);
    const Database& db_;
    HammingFn hamming_;
    BatchKernel batch_;
    bool keep_;
    size_t buckets_;
    size_t segment_ = 0, segments_ = 0;  // items per mark (a multiple of the block), number of marks
    std::vector<Key> block_keys_;        // one block's keys (generic path, when not keeping keys)
    AlignedVector<uint8_t> batch_keys_;  // batch kernel, keys not kept: the current and the pending block's keys
    AlignedVector<uint8_t> tables_;      // batch kernel: per-query nibble tables
    AlignedVector<Key> keys_;            // kBatch rows of N keys, when keeping keys
    size_t key_stride_ = 0;              // keys per row: N rounded up to whole cache lines
    std::vector<uint32_t> count_;        // kBatch x 4 interleaved sub-histograms x 2 (q + 1) keys
    std::vector<uint32_t> marks_;        // kBatch x segments x 2 (q + 1): key histogram before each segment
};

extern template class QueryScanner<uint8_t>;
extern template class QueryScanner<uint16_t>;

// Distances of `count` consecutive queries to every database item, in index order (query j's in
// distance[j N, (j + 1) N)), and their histograms (n[j (q + 1) + d]), for search. Block by block, every query
// in turn: a block's codes are read from memory once for all of them.
void scan_distances(const Database& db, HammingFn hamming, const uint64_t* query_codes, size_t count,
                    uint16_t* distance, int64_t* n);
// The k nearest of N items in (distance, index) order, from one query's distances and their histogram n
// (q + 1 buckets): a counting sort restricted to the top k. slot: q + 1 counters of scratch.
void top_k_by_distance(const uint16_t* distance, const int64_t* n, size_t N, size_t k, size_t width, int64_t* slot,
                       int64_t* indices, int32_t* distances);

}  // namespace shc
