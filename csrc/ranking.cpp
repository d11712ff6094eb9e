#include "ranking.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace shc {

RankPlan::RankPlan(std::vector<int64_t> ap, std::vector<int64_t> hits, bool index_tables)
    : ap_ranks(std::move(ap)), hit_ranks(std::move(hits)) {
    for (int64_t k : ap_ranks) max_ap_rank = std::max(max_ap_rank, k);
    max_rank = max_ap_rank;
    for (int64_t k : hit_ranks) max_rank = std::max(max_rank, k);
    for (size_t i = 0; i < ap_ranks.size(); ++i) checkpoints.emplace_back(ap_ranks[i], i);
    for (size_t i = 0; i < hit_ranks.size(); ++i) checkpoints.emplace_back(hit_ranks[i], ap_ranks.size() + i);
    std::stable_sort(checkpoints.begin(), checkpoints.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (!index_tables) return;
    inverse_rank.resize(static_cast<size_t>(max_rank) + 1);  // the index walk reads ranks up to its limit only
    for (int64_t k = 0; k <= max_rank; ++k) inverse_rank[size_t(k)] = k > 0 ? 1.0 / double(k) : 0.0;
}

std::vector<long double> harmonic_table(size_t n) {
    std::vector<long double> h(n + 1);
    h[0] = 0.0L;
    for (size_t i = 1; i <= n; ++i) h[i] = h[i - 1] + 1.0L / static_cast<long double>(i);
    return h;
}

namespace {

using Real = long double;

// sum_{j=1..m} (a + beta (j - 1)) / (c + j)  =  m beta + (a - beta - beta c) (H[c+m] - H[c])
inline Real ramp_sum(const long double* H, Real a, Real beta, int64_t c, int64_t m) {
    if (m <= 0) return 0.0L;
    return m * beta + (a - beta - beta * c) * (H[c + m] - H[c]);
}

inline Real log_choose(int64_t n, int64_t k) {
    return std::lgamma(static_cast<Real>(n + 1)) - std::lgamma(static_cast<Real>(k + 1)) -
           std::lgamma(static_cast<Real>(n - k + 1));
}

struct Prefix {
    std::vector<int64_t> N, R;  // items / relevant items strictly before bucket d
    int64_t total_relevant = 0;
};

// Sum over relevant items of a full bucket of (relevant items ranked at or before it) / rank, under `ties`.
Real full_bucket_sum(Ties ties, const long double* H, int64_t nd, int64_t rd, int64_t Nd, int64_t Rd) {
    if (rd == 0) return 0.0L;
    switch (ties) {
        case Ties::Optimistic: return ramp_sum(H, Rd + 1, 1, Nd, rd);
        case Ties::Pessimistic: return ramp_sum(H, Rd + 1, 1, Nd + nd - rd, rd);
        default: {  // expected: position j is relevant w.p. r/n and then has on average (j-1)(r-1)/(n-1) relevant before it
            const Real beta = nd > 1 ? Real(rd - 1) / Real(nd - 1) : 0.0L;
            return Real(rd) / Real(nd) * ramp_sum(H, Rd + 1, beta, Nd, nd);
        }
    }
}

// E[AP@k] where k cuts bucket (nd, rd) after m of its items; F = sum over the full buckets before it.
Real cut_bucket_ap(Ties ties, const long double* H, int64_t nd, int64_t rd, int64_t Nd, int64_t Rd, int64_t m, Real F) {
    auto ap = [](Real numerator, int64_t hits) { return hits > 0 ? numerator / hits : 0.0L; };
    switch (ties) {
        case Ties::Optimistic: {
            const int64_t t = std::min(rd, m);
            return ap(F + ramp_sum(H, Rd + 1, 1, Nd, t), Rd + t);
        }
        case Ties::Pessimistic: {
            const int64_t t = std::max<int64_t>(0, m - (nd - rd));
            return ap(F + ramp_sum(H, Rd + 1, 1, Nd + nd - rd, t), Rd + t);
        }
        default: {
            // X = relevant items among the m kept positions ~ Hypergeometric(nd, rd, m); given X = x they are a
            // uniform x-subset of the m positions, so the bucket adds (x/m) ramp_sum(Rd+1, (x-1)/(m-1), Nd, m).
            const int64_t lo = std::max<int64_t>(0, m - (nd - rd)), hi = std::min(rd, m);
            Real p = std::exp(log_choose(rd, lo) + log_choose(nd - rd, m - lo) - log_choose(nd, m));
            const Real dH = H[Nd + m] - H[Nd];
            Real total = 0.0L, mass = 0.0L;
            for (int64_t x = lo; x <= hi; ++x) {
                Real part = 0.0L;
                if (x > 0) {
                    const Real beta = m > 1 ? Real(x - 1) / Real(m - 1) : 0.0L;
                    part = Real(x) / Real(m) * (m * beta + (Rd + 1 - beta - beta * Nd) * dH);
                }
                total += p * ap(F + part, Rd + x);
                mass += p;
                // P(x+1) / P(x) = (r - x)(m - x) / ((x + 1)(n - r - m + x + 1))
                p *= Real(rd - x) * Real(m - x) / (Real(x + 1) * Real(nd - rd - m + x + 1));
            }
            return mass > 0 ? total / mass : 0.0L;
        }
    }
}

Real cut_bucket_hits(Ties ties, int64_t nd, int64_t rd, int64_t Rd, int64_t m) {
    switch (ties) {
        case Ties::Optimistic: return Rd + std::min(rd, m);
        case Ties::Pessimistic: return Rd + std::max<int64_t>(0, m - (nd - rd));
        default: return Rd + Real(m) * Real(rd) / Real(nd);
    }
}

}  // namespace

void bucket_rank_metrics(const int64_t* n, const int64_t* r, int bits, Ties ties, const RankPlan& plan,
                         const long double* H, double* ap, double* hits) {
    if (ties == Ties::Index) throw std::invalid_argument("index ties need the in-bucket order, not only buckets");
    const size_t buckets = static_cast<size_t>(bits) + 1;
    // walk the checkpoints in ascending rank alongside the buckets
    size_t d = 0;
    int64_t Nd = 0, Rd = 0;
    Real F = 0.0L;  // sum over full buckets before d
    for (const auto& [k, slot] : plan.checkpoints) {
        while (d < buckets && Nd + n[d] < k) {
            F += full_bucket_sum(ties, H, n[d], r[d], Nd, Rd);
            Nd += n[d];
            Rd += r[d];
            ++d;
        }
        if (d == buckets) throw std::invalid_argument("rank beyond the database size");
        const int64_t m = k - Nd;
        if (slot < plan.ap_ranks.size())
            ap[slot] = static_cast<double>(cut_bucket_ap(ties, H, n[d], r[d], Nd, Rd, m, F));
        else
            hits[slot - plan.ap_ranks.size()] = static_cast<double>(cut_bucket_hits(ties, n[d], r[d], Rd, m));
    }
}

IndexRanker::IndexRanker(int bits) : next_rank_(size_t(bits) + 1) {}

template <class Key>
void IndexRanker::run(const Key* keys, size_t count, const int64_t* n, const RankPlan& plan, int64_t limit,
                      double* ap, double* hits) {
    const size_t buckets = next_rank_.size();
    // bucket d's items take ranks first_rank[d], first_rank[d] + 1, ... in index order (numpy's stable argsort)
    int64_t* next_rank = next_rank_.data();  // first_rank, then advanced by the counting sort
    int64_t ranked = 0;
    size_t cut = buckets, nonempty = 0;  // the bucket holding rank `limit`; non-empty buckets up to it
    for (size_t d = 0; d < buckets; ++d) {
        next_rank[d] = ranked + 1;
        if (cut == buckets) nonempty += n[d] > 0;
        if (cut == buckets && ranked + n[d] >= limit) cut = d;
        ranked += n[d];
    }
    if (cut == buckets) throw std::invalid_argument("rank beyond the database size");
    const Key last_key = make_key<Key>(unsigned(cut), true);
    // relevant_at[rank], read for ranks 1..limit; past them room for the cut bucket's later items and 8-byte stores
    relevant_at_.assign(size_t(std::max(limit + 2, next_rank[cut] + n[cut] + 8)), 0);
    uint8_t* relevant_at = relevant_at_.data();
    constexpr size_t keys_per_vector = 32 / sizeof(Key);
    if (nonempty * 2 <= keys_per_vector) {
        // few buckets (small k): the keys up to the cut (a few percent), then one vector pass over them per
        // bucket that writes its items' relevance from its first rank on — no per-item counter, whose
        // increments chain through memory when neighbouring items share a bucket
        selected_.resize(count + 8);
        Key* selected = reinterpret_cast<Key*>(selected_.data());
        const size_t m = select_keys_at_most(keys, count, last_key, selected);
        for (size_t d = 0; d <= cut; ++d)
            if (n[d] > 0) bucket_relevance(selected, m, unsigned(d), relevant_at + next_rank[d]);
    } else {
        // many buckets: a stable counting sort, a chunk of selected keys at a time; the cut bucket's items past
        // the limit all land in slot limit + 1, and the walk stops once it has placed every item ranked <= limit
        selected_.resize(kChunk + 8);
        Key* selected = reinterpret_cast<Key*>(selected_.data());
        int64_t placed = 0;
        for (size_t begin = 0; begin < count && placed < limit; begin += kChunk) {
            const size_t m = select_keys_at_most(keys + begin, std::min(kChunk, count - begin), last_key, selected);
            for (size_t j = 0; j < m; ++j) {
                const unsigned key = selected[j];
                const int64_t rank = std::min(next_rank[key_bucket(key)]++, limit + 1);
                relevant_at[rank] = static_cast<uint8_t>(key & 1u);
                placed += rank <= limit;
            }
        }
    }
    // AP@k = (sum over relevant ranks i <= k of hits(i) / i) / hits(k), from one pass over ranks 1..limit
    const double* inverse_rank = plan.inverse_rank.data();
    const size_t n_ap = plan.ap_ranks.size();
    int64_t rank = 0, found = 0;
    double sum_even = 0.0, sum_odd = 0.0;  // two partial sums: half the floating-point add chain
    for (const auto& [k, slot] : plan.checkpoints) {  // ascending ranks
        if (k > limit) break;
        // branch-free: about every other rank is relevant, unpredictably
        for (; rank + 2 <= k; rank += 2) {
            const int64_t first = relevant_at[rank + 1], second = relevant_at[rank + 2];
            const int64_t found_first = found + first;
            found = found_first + second;
            sum_odd += double(first * found_first) * inverse_rank[rank + 1];
            sum_even += double(second * found) * inverse_rank[rank + 2];
        }
        if (rank < k) {
            const int64_t relevant = relevant_at[++rank];
            found += relevant;
            sum_odd += double(relevant * found) * inverse_rank[rank];
        }
        const double precision_sum = sum_odd + sum_even;
        if (slot < n_ap)
            ap[slot] = found > 0 ? precision_sum / double(found) : 0.0;
        else
            hits[slot - n_ap] = double(found);
    }
}

template void IndexRanker::run(const uint8_t*, size_t, const int64_t*, const RankPlan&, int64_t, double*, double*);
template void IndexRanker::run(const uint16_t*, size_t, const int64_t*, const RankPlan&, int64_t, double*, double*);

}  // namespace shc
