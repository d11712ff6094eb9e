#include "evaluate.h"

#include <algorithm>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace shc {

namespace {

// Queries per work item: 32, or as few as 4 when there are few queries, so that every thread gets some. It depends
// on the query count only — the blocks' sums are added in block order, so any thread count gives the same bits.
constexpr size_t kQueryBlock = 32;
size_t query_block(size_t Q) { return std::clamp<size_t>(Q / 64, 4, kQueryBlock); }

// Adds one query's radius and rank metrics to a block accumulator laid out as
// [radius_precision (q+1) | radius_recall (q+1) | rank_precision (G) | rank_recall (G)].
// Ratios with a zero denominator count 0 (nothing retrieved / no relevant item), like AP.
void accumulate_query(const int64_t* n, const int64_t* r, size_t buckets, const double* hits, const RankPlan& plan,
                      int64_t total_relevant, double* acc) {
    double* rp = acc;
    double* rr = rp + buckets;
    double* kp = rr + buckets;
    double* kr = kp + plan.hit_ranks.size();
    int64_t retrieved = 0, found = 0;
    for (size_t d = 0; d < buckets; ++d) {
        retrieved += n[d];
        found += r[d];
        rp[d] += retrieved > 0 ? double(found) / double(retrieved) : 0.0;
        rr[d] += total_relevant > 0 ? double(found) / double(total_relevant) : 0.0;
    }
    for (size_t g = 0; g < plan.hit_ranks.size(); ++g) {
        kp[g] += hits[g] / double(plan.hit_ranks[g]);
        kr[g] += total_relevant > 0 ? hits[g] / double(total_relevant) : 0.0;
    }
}

// The one reduction behind evaluate() and reduce_buckets(). make_worker() is called once per thread and returns
// worker(first, count, n, r, ap, hits), which fills buckets and rank metrics of queries [first, first + count)
// (row j of each array belongs to query first + j).
template <class MakeWorker>
Summary reduce_queries(size_t Q, int bits, const RankPlan& plan, int threads, MakeWorker make_worker) {
    const size_t buckets = static_cast<size_t>(bits) + 1, G = plan.hit_ranks.size(), K = plan.ap_ranks.size();
    const size_t width = 2 * buckets + 2 * G;
    const size_t block = query_block(Q), blocks = (Q + block - 1) / block;
    Summary out;
    out.ap.assign(Q * K, 0.0);
    std::vector<double> block_acc(blocks * width, 0.0);
    std::vector<int64_t> block_norel(blocks, 0);
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        auto worker = make_worker();
        std::vector<int64_t> n(kQueryBlock * buckets), r(kQueryBlock * buckets);
        std::vector<double> hits(kQueryBlock * G);
#pragma omp for schedule(dynamic, 1)
        for (long long blk = 0; blk < static_cast<long long>(blocks); ++blk) {
            const size_t q0 = size_t(blk) * block, q1 = std::min(Q, q0 + block);
            worker(q0, q1 - q0, n.data(), r.data(), out.ap.data() + q0 * K, hits.data());
            for (size_t j = 0; j < q1 - q0; ++j) {
                const int64_t* nj = n.data() + j * buckets;
                const int64_t* rj = r.data() + j * buckets;
                int64_t total_relevant = 0;
                for (size_t d = 0; d < buckets; ++d) total_relevant += rj[d];
                block_norel[blk] += total_relevant == 0;
                accumulate_query(nj, rj, buckets, hits.data() + j * G, plan, total_relevant,
                                 block_acc.data() + size_t(blk) * width);
            }
        }
    }
    std::vector<double> total(width, 0.0);
    for (size_t blk = 0; blk < blocks; ++blk) {
        for (size_t j = 0; j < width; ++j) total[j] += block_acc[blk * width + j];
        out.queries_without_relevant += block_norel[blk];
    }
    const double inv = Q > 0 ? 1.0 / double(Q) : 0.0;
    for (double& v : total) v *= inv;
    out.radius_precision.assign(total.begin(), total.begin() + buckets);
    out.radius_recall.assign(total.begin() + buckets, total.begin() + 2 * buckets);
    out.rank_precision.assign(total.begin() + 2 * buckets, total.begin() + 2 * buckets + G);
    out.rank_recall.assign(total.begin() + 2 * buckets + G, total.end());
    return out;
}

// `index` ties: hits at the hit ranks past the largest AP cut-off — relevant items before the cut bucket d plus
// relevant_in_prefix(d, m, n_d), the relevant ones among its first m items.
template <class RelevantInPrefix>
void hits_past_walk(const int64_t* n, const int64_t* r, const RankPlan& plan,
                    RelevantInPrefix relevant_in_prefix, double* hits) {
    const size_t n_ap = plan.ap_ranks.size();
    size_t d = 0;
    int64_t Nd = 0, Rd = 0;
    for (const auto& [k, slot] : plan.checkpoints) {  // ascending ranks
        if (k <= plan.max_ap_rank || slot < n_ap) continue;
        while (Nd + n[d] < k) {
            Nd += n[d];
            Rd += r[d];
            ++d;
        }
        hits[slot - n_ap] = double(Rd + relevant_in_prefix(unsigned(d), k - Nd, n[d]));
    }
}

// f(Key{}) for the key width the database's code length allows (keys.h): bytes up to q = 127
template <class F>
auto with_key_type(const Database& db, F&& f) {
    if (db.bits <= kMaxByteKeyBits) return f(uint8_t{});
    return f(uint16_t{});
}

}  // namespace

int resolve_threads(int threads) {
#ifdef _OPENMP
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
    return 1;
#endif
}

Summary evaluate(const QuerySet& queries, const Database& db_in, Ties ties, const RankPlan& plan, int threads) {
    ScanLayout layout;
    const Database db = with_scan_layout(db_in, layout, resolve_threads(threads));
    std::vector<long double> harmonic;
    if (ties != Ties::Index) harmonic = harmonic_table(db.n);
    const size_t buckets = size_t(db.bits) + 1, K = plan.ap_ranks.size(), G = plan.hit_ranks.size();
    return with_key_type(db, [&](auto key_type) {
        using Scanner = QueryScanner<decltype(key_type)>;
        auto make_worker = [&]() {
            return [&, scanner = Scanner(db, ties == Ties::Index), ranker = IndexRanker(db.bits)](
                       size_t first, size_t count, int64_t* n, int64_t* r, double* ap, double* hits) mutable {
                for (size_t b = 0; b < count; b += Scanner::kBatch) {
                    const size_t batch = std::min(Scanner::kBatch, count - b);
                    int64_t* nb = n + b * buckets;
                    int64_t* rb = r + b * buckets;
                    scanner.scan(queries.codes, queries.labels, first + b, batch, nb, rb);
                    for (size_t j = 0; j < batch; ++j) {
                        int64_t* nj = nb + j * buckets;
                        int64_t* rj = rb + j * buckets;
                        double* apj = ap + (b + j) * K;
                        double* hitsj = hits + (b + j) * G;
                        if (ties == Ties::Index) {
                            // AP (and hits up to the largest AP cut-off) from a walk over the first buckets'
                            // keys; hits at larger ranks from the scanner's marks and one segment of keys
                            ranker.run(scanner.keys(j), db.n, nj, plan, plan.max_ap_rank, apj, hitsj);
                            hits_past_walk(nj, rj, plan, [&](unsigned d, int64_t m, int64_t n_d) {
                                return scanner.relevant_in_prefix(j, d, m, n_d);
                            }, hitsj);
                        } else {
                            bucket_rank_metrics(nj, rj, db.bits, ties, plan, harmonic.data(), apj, hitsj);
                        }
                    }
                }
            };
        };
        return reduce_queries(queries.n, db.bits, plan, threads, make_worker);
    });
}

Summary reduce_buckets(const int64_t* n_all, const int64_t* r_all, size_t Q, int bits, int64_t N, Ties ties,
                       const RankPlan& plan, const double* index_ap, const double* index_hits, int threads) {
    const size_t buckets = static_cast<size_t>(bits) + 1, K = plan.ap_ranks.size(), G = plan.hit_ranks.size();
    std::vector<long double> harmonic;
    if (ties != Ties::Index) harmonic = harmonic_table(static_cast<size_t>(N));
    auto make_worker = [&]() {
        return [&](size_t first, size_t count, int64_t* n, int64_t* r, double* ap, double* hits) {
            std::copy(n_all + first * buckets, n_all + (first + count) * buckets, n);
            std::copy(r_all + first * buckets, r_all + (first + count) * buckets, r);
            if (ties == Ties::Index) {
                std::copy(index_ap + first * K, index_ap + (first + count) * K, ap);
                std::copy(index_hits + first * G, index_hits + (first + count) * G, hits);
                return;
            }
            for (size_t j = 0; j < count; ++j)
                bucket_rank_metrics(n + j * buckets, r + j * buckets, bits, ties, plan, harmonic.data(), ap + j * K,
                                    hits + j * G);
        };
    };
    return reduce_queries(Q, bits, plan, threads, make_worker);
}

void index_walk(const uint16_t* entries, size_t Q, size_t k, const int64_t* n, int bits, const RankPlan& plan,
                int threads, double* ap, double* hits) {
    const size_t buckets = size_t(bits) + 1, K = plan.ap_ranks.size(), G = plan.hit_ranks.size();
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        IndexRanker ranker(bits);
#pragma omp for schedule(dynamic, 16)
        for (long long qi = 0; qi < static_cast<long long>(Q); ++qi)
            ranker.run(entries + size_t(qi) * k, k, n + size_t(qi) * buckets, plan, plan.max_rank,
                       ap + size_t(qi) * K, hits + size_t(qi) * G);
    }
}

void buckets(const QuerySet& queries, const Database& db_in, int threads, int64_t* n, int64_t* r) {
    ScanLayout layout;
    const Database db = with_scan_layout(db_in, layout, resolve_threads(threads));
    with_key_type(db, [&](auto key_type) {
        using Scanner = QueryScanner<decltype(key_type)>;
        const size_t width = static_cast<size_t>(db.bits) + 1, batch = Scanner::kBatch;
        const size_t batches = (queries.n + batch - 1) / batch;
#pragma omp parallel num_threads(resolve_threads(threads))
        {
            Scanner scanner(db);
#pragma omp for schedule(dynamic, 2)
            for (long long b = 0; b < static_cast<long long>(batches); ++b) {
                const size_t first = size_t(b) * batch, count = std::min(batch, queries.n - first);
                scanner.scan(queries.codes, queries.labels, first, count, n + first * width, r + first * width);
            }
        }
    });
}

namespace {

// queries searched together: each database block is read once per tile (wide codes are bound by that traffic)
constexpr size_t kSearchTile = 4;

}  // namespace

void search(const QuerySet& queries, const Database& db, size_t k, int threads, int64_t* indices, int32_t* distances) {
    if (k == 0 || k > db.n) throw std::invalid_argument("k must be in [1, N]");
    const size_t width = static_cast<size_t>(db.bits) + 1;
    const size_t tiles = (queries.n + kSearchTile - 1) / kSearchTile;
    const HammingFn hamming = hamming_kernel(db.words);
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        std::vector<uint16_t> distance(kSearchTile * db.n);
        std::vector<int64_t> n(kSearchTile * width), slot(width);
#pragma omp for schedule(dynamic, 4)
        for (long long t = 0; t < static_cast<long long>(tiles); ++t) {
            const size_t first = size_t(t) * kSearchTile, count = std::min(kSearchTile, queries.n - first);
            scan_distances(db, hamming, queries.codes + first * db.words, count, distance.data(), n.data());
            for (size_t j = 0; j < count; ++j)
                top_k_by_distance(distance.data() + j * db.n, n.data() + j * width, db.n, k, width, slot.data(),
                                  indices + (first + j) * k, distances + (first + j) * k);
        }
    }
}

}  // namespace shc
