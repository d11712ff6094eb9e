// One pass over the database for one query: Hamming distances, relevance and the per-distance histogram.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hamming.h"

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
};

// Largest q the engine supports (distances are held in uint16).
constexpr int kMaxBits = 32767;

// Relevant items of one query in database index order, with what their rank under `index` ties needs:
// the distance bucket and the number of items of that bucket before them (counting sort, stable by index).
// Packed as position << 16 | bucket (one store per item in the scan's inner loop).
struct RelevantItems {
    std::vector<uint64_t> items;
    size_t count = 0;
    static uint16_t bucket(uint64_t item) { return static_cast<uint16_t>(item); }
    static uint64_t position(uint64_t item) { return item >> 16; }  // 0-based, among the bucket's items
};

// Per-thread scratch and the pass itself. Queries are scanned in batches of up to kBatch: each database block
// (codes and labels) is read once from memory and used for every query of the batch while it sits in cache.
// For query j of the batch: n[j (q+1) + d], r[j (q+1) + d] are the item and relevant-item counts at distance d,
// and, when asked, relevant(j) lists its relevant items. Memory: O(block) + the relevant lists.
class QueryScanner {
public:
    static constexpr size_t kBatch = 8;
    QueryScanner(const Database& db, bool record_relevant);
    void scan(const uint64_t* query_codes, const Labels& query_labels, size_t first, size_t count, int64_t* n,
              int64_t* r);
    const RelevantItems& relevant(size_t j) const { return relevant_[j]; }

private:
    const Database& db_;
    HammingFn hamming_;
    bool record_;
    bool vector_record_ = false;  // AVX2 positions for relevant items only (scan.cpp)
    size_t buckets_;
    std::vector<uint16_t> distance_;   // one block
    std::vector<uint8_t> flag_;        // one block: relevant or not
    std::vector<uint32_t> count_;      // kBatch x 2 buckets: per-(distance, relevant) histogram
    std::vector<uint64_t> next_;       // kBatch x buckets, when recording: (items so far << 16) | distance
    std::vector<RelevantItems> relevant_;
};

// Distances of one query to every database item, in index order, and their histogram (search).
void scan_distances(const Database& db, HammingFn hamming, const uint64_t* query_code, uint16_t* distance,
                    int64_t* n);

}  // namespace shc
