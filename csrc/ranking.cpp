#include "ranking.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace shc {

RankPlan::RankPlan(std::vector<int64_t> ap, std::vector<int64_t> hits, int64_t n_database, bool index_tables)
    : ap_ranks(std::move(ap)), hit_ranks(std::move(hits)) {
    for (int64_t k : ap_ranks) max_ap_rank = std::max(max_ap_rank, k);
    max_rank = max_ap_rank;
    for (int64_t k : hit_ranks) max_rank = std::max(max_rank, k);
    for (size_t i = 0; i < ap_ranks.size(); ++i) checkpoints.emplace_back(ap_ranks[i], i);
    for (size_t i = 0; i < hit_ranks.size(); ++i) checkpoints.emplace_back(hit_ranks[i], ap_ranks.size() + i);
    std::stable_sort(checkpoints.begin(), checkpoints.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& cp : checkpoints)
        if (distinct.empty() || distinct.back() != cp.first) distinct.push_back(cp.first);
    if (!index_tables) return;
    bin_of_rank.resize(static_cast<size_t>(n_database) + 1);
    inverse_rank.resize(static_cast<size_t>(n_database) + 1);
    size_t j = 0;
    for (int64_t k = 0; k <= n_database; ++k) {
        while (j < distinct.size() && distinct[j] < k) ++j;
        bin_of_rank[size_t(k)] = static_cast<uint32_t>(j);
        inverse_rank[size_t(k)] = k > 0 ? 1.0 / double(k) : 0.0;
    }
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

IndexRanker::IndexRanker(int bits)
    : before_(size_t(bits) + 1), rel_before_(size_t(bits) + 1),
      rel_seen_(size_t(bits) + 1), position_(size_t(bits) + 1) {}

void IndexRanker::run(const uint16_t* keys, size_t count, const int64_t* n, const int64_t* r, const RankPlan& plan,
                      int64_t limit, double* ap, double* hits) {
    const size_t buckets = before_.size(), bins = plan.distinct.size();
    int64_t Nd = 0, Rd = 0;
    size_t cut = buckets;  // the bucket holding rank `limit`
    for (size_t d = 0; d < buckets; ++d) {
        before_[d] = Nd;
        rel_before_[d] = Rd;
        if (cut == buckets && Nd + n[d] >= limit) cut = d;
        Nd += n[d];
        Rd += r[d];
    }
    if (cut == buckets) throw std::invalid_argument("rank beyond the database size");
    const int64_t cut_items = limit - before_[cut];  // items of the cut bucket ranked <= limit
    std::fill(rel_seen_.begin(), rel_seen_.end(), 0);
    bin_hits_.assign(bins + 1, 0);  // last bin: past every checkpoint
    bin_sum_.assign(bins + 1, 0.0);
    const uint32_t* bin_of_rank = plan.bin_of_rank.data();
    const double* inverse_rank = plan.inverse_rank.data();
    std::fill(position_.begin(), position_.end(), 0);
    // plain local pointers: the visit runs for every item up to the cut, and members behind a captured `this`
    // would be reloaded after each store
    int64_t* position = position_.data();
    int64_t* rel_seen = rel_seen_.data();
    int64_t* bin_hits = bin_hits_.data();
    double* bin_sum = bin_sum_.data();
    const int64_t* before = before_.data();
    const int64_t* rel_before = rel_before_.data();
    const int64_t cut_rank = before[cut] + cut_items;  // ranks past it are not needed
    // only the buckets up to the cut: the other keys are skipped 16 at a time
    for_each_key_at_most(keys, count, make_key(unsigned(cut), true), [=](size_t i) {
        const uint16_t key = keys[i];
        const unsigned d = key_bucket(key);
        const int64_t rank = before[d] + ++position[d];
        if (!key_relevant(key) || rank > cut_rank) return;
        const int64_t relevant_so_far = rel_before[d] + ++rel_seen[d];  // relevant items ranked <= rank
        const uint32_t bin = bin_of_rank[rank];
        ++bin_hits[bin];
        bin_sum[bin] += double(relevant_so_far) * inverse_rank[rank];
    });
    // cumulative over bins = relevant items and precision sum up to each distinct checkpoint rank
    for (size_t j = 1; j < bins; ++j) {
        bin_hits_[j] += bin_hits_[j - 1];
        bin_sum_[j] += bin_sum_[j - 1];
    }
    const size_t n_ap = plan.ap_ranks.size();
    size_t j = 0;
    for (const auto& [k, slot] : plan.checkpoints) {  // ascending, like plan.distinct
        if (k > limit) break;
        while (plan.distinct[j] < k) ++j;
        if (slot < n_ap)
            ap[slot] = bin_hits_[j] > 0 ? bin_sum_[j] / double(bin_hits_[j]) : 0.0;
        else
            hits[slot - n_ap] = double(bin_hits_[j]);
    }
}

}  // namespace shc
