// Query-parallel drivers: evaluate (scan + rank metrics + reduction), the same reduction from externally
// produced buckets, per-query buckets, and top-k search.
//
// Determinism: queries are processed in blocks whose size depends on the query count only; each block sums its
// queries in query order and blocks are summed in block order, so results do not depend on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ranking.h"
#include "scan.h"

namespace shc {

struct Summary {
    std::vector<double> ap;                 // Q x len(ap_ranks), per query
    std::vector<double> radius_precision;   // q + 1: mean over queries of P@H<=rho
    std::vector<double> radius_recall;      // q + 1: mean over queries of R@H<=rho
    std::vector<double> rank_precision;     // len(hit_ranks): mean precision@k
    std::vector<double> rank_recall;        // len(hit_ranks): mean recall@k
    int64_t queries_without_relevant = 0;
};

struct QuerySet {
    const uint64_t* codes = nullptr;  // Q x words
    size_t n = 0;
    Labels labels;
};

int resolve_threads(int threads);

Summary evaluate(const QuerySet& queries, const Database& db, Ties ties, const RankPlan& plan, int threads);

// n, r: Q x (q + 1). For Ties::Index, index_ap (Q x len(ap_ranks)) and index_hits (Q x len(hit_ranks)) carry
// what the producer measured on its own stable ranking; for the other modes they must be null.
Summary reduce_buckets(const int64_t* n, const int64_t* r, size_t Q, int bits, int64_t N, Ties ties,
                       const RankPlan& plan, const double* index_ap, const double* index_hits, int threads);

// `index` ties from an external producer (GPU): entries[i, j] = (distance << 1) | relevant of the items of query i's
// top k (k >= every rank in plan), listed in database-index order. Within a bucket those items are a prefix in
// index order, so a running count gives each one's exact position. Fills ap (Q x K) and hits (Q x G).
void index_walk(const uint16_t* entries, size_t Q, size_t k, const int64_t* n, int bits, const RankPlan& plan,
                int threads, double* ap, double* hits);

// Per-query histograms (n, r: Q x (q + 1)), as an external producer would supply them.
void buckets(const QuerySet& queries, const Database& db, int threads, int64_t* n, int64_t* r);

// k nearest database items per query, ordered by (distance, index); k <= N.
void search(const QuerySet& queries, const Database& db, size_t k, int threads, int64_t* indices, int32_t* distances);

}  // namespace shc
