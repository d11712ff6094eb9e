// Rank metrics of one query from its per-distance buckets (n_d, r_d), d = 0..q.
//
// For every cut-off k in `ap_ranks` the AP@k, and for every k in `hit_ranks` the number of relevant items in
// the top k ("hits", fractional for `expected`). Ranks are 1-based and already clipped to [1, N].
// Tie modes expected / optimistic / pessimistic need only the buckets (closed forms with harmonic numbers);
// `index` needs the in-bucket order: the scan keeps every item's key in index order (IndexRanker).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "keys.h"

namespace shc {

enum class Ties : int { Index = 0, Expected = 1, Optimistic = 2, Pessimistic = 3 };

struct RankPlan {
    std::vector<int64_t> ap_ranks;   // cut-offs k for AP@k, each in [1, N]
    std::vector<int64_t> hit_ranks;  // PR-by-rank grid, each in [1, N]
    int64_t max_ap_rank = 0, max_rank = 0;
    // both lists merged in ascending rank; slot < ap_ranks.size() is an AP cut-off, else a grid point
    std::vector<std::pair<int64_t, size_t>> checkpoints;
    // for `index` ties: 1/k for k = 0..max_rank (multiplying by a table beats dividing per rank)
    std::vector<double> inverse_rank;
    RankPlan(std::vector<int64_t> ap, std::vector<int64_t> hits, bool index_tables);
};

// H[i] = 1 + 1/2 + ... + 1/i for i = 0..N, in extended precision: differences H[c+m] - H[c] of large,
// close values are multiplied by large coefficients in the closed forms below.
std::vector<long double> harmonic_table(size_t n);

// Bucket-only tie modes (throws std::invalid_argument for Ties::Index).
void bucket_rank_metrics(const int64_t* n, const int64_t* r, int bits, Ties ties, const RankPlan& plan,
                         const long double* harmonic, double* ap, double* hits);

// `index` ties: an item in bucket d at position p (0-based, among the bucket's items in index order) has rank
// N_d + p + 1 — numpy's stable argsort. run() selects the keys (keys.h) of the buckets up to the one holding rank
// `limit` (16 or 32 keys per vector compare, branch-free) and places them by rank: with few such buckets one
// vector pass per bucket writes its items' relevance from the bucket's first rank on, with many a stable counting
// sort does. AP and hits are then read off the ranked relevance list in one pass. It fills AP at every ap_rank
// (all must be <= limit) and hits at every hit_rank <= limit; hits at larger ranks are left as they are.
class IndexRanker {
public:
    explicit IndexRanker(int bits);
    // keys: at least the items ranked <= limit, in index order (each bucket's items a prefix of its index order)
    template <class Key>  // uint8_t or uint16_t (keys.h)
    void run(const Key* keys, size_t count, const int64_t* n, const RankPlan& plan, int64_t limit, double* ap,
             double* hits);

private:
    static constexpr size_t kChunk = 4096;  // keys selected at a time
    std::vector<int64_t> next_rank_;
    std::vector<uint16_t> selected_;  // selected keys of either width
    std::vector<uint8_t> relevant_at_;
};

}  // namespace shc
