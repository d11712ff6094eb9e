// Python bindings of the engine (shc._engine). The Python layer (shc.metrics, shc.codes) validates and
// converts user input; these bindings check shapes and dtypes again, then release the GIL for the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "evaluate.h"
#include "likelihood.h"
#include "pack.h"

namespace py = pybind11;
using namespace shc;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;  // no forcecast: the Python layer converts explicitly

Ties parse_ties(const std::string& name) {
    if (name == "index") return Ties::Index;
    if (name == "expected") return Ties::Expected;
    if (name == "optimistic") return Ties::Optimistic;
    if (name == "pessimistic") return Ties::Pessimistic;
    throw std::invalid_argument("unknown ties mode '" + name + "' (index, expected, optimistic, pessimistic)");
}

void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

// literal messages: no std::string is built unless the check fails (some checks run per element)
void require(bool ok, const char* message) {
    if (!ok) throw std::invalid_argument(message);
}

size_t words_for(int bits) { return (static_cast<size_t>(bits) + 63) / 64; }

void check_codes(const Array<uint64_t>& codes, int bits, const char* what) {
    require(codes.ndim() == 2, std::string(what) + " must be a 2-D uint64 array");
    require(static_cast<size_t>(codes.shape(1)) == words_for(bits),
            std::string(what) + " has " + std::to_string(codes.shape(1)) + " words per row, expected " +
                std::to_string(words_for(bits)) + " for " + std::to_string(bits) + " bits");
}

// One of ids (1-D int32) or bitmaps (2-D uint64) per side, the same kind on both sides.
struct LabelArgs {
    std::optional<Array<int32_t>> ids;
    std::optional<Array<uint64_t>> bitmaps;
    Labels view(size_t rows, const char* what) const {
        Labels l;
        if (ids) {
            require(ids->ndim() == 1 && size_t(ids->shape(0)) == rows, std::string(what) + " ids: wrong shape");
            l.ids = ids->data();
        } else if (bitmaps) {
            require(bitmaps->ndim() == 2 && size_t(bitmaps->shape(0)) == rows && bitmaps->shape(1) >= 1,
                    std::string(what) + " bitmaps: wrong shape");
            l.bitmaps = bitmaps->data();
            l.words = size_t(bitmaps->shape(1));
        }
        return l;
    }
};

struct Inputs {
    QuerySet queries;
    Database db;
};

Inputs make_inputs(const Array<uint64_t>& qcodes, const Array<uint64_t>& dbcodes, int bits, const LabelArgs& ql,
                   const LabelArgs& dl) {
    require(bits >= 1 && bits <= kMaxBits, "bits must be in [1, " + std::to_string(kMaxBits) + "]");
    check_codes(qcodes, bits, "query codes");
    check_codes(dbcodes, bits, "database codes");
    require(qcodes.shape(0) >= 1 && dbcodes.shape(0) >= 1, "query and database must be non-empty");
    require(uint64_t(dbcodes.shape(0)) < (uint64_t(1) << 32), "the database must hold fewer than 2^32 items");
    require(bool(ql.ids) == bool(dl.ids) && bool(ql.bitmaps) == bool(dl.bitmaps),
            "query and database labels must be of the same kind");
    Inputs in;
    in.queries.codes = qcodes.data();
    in.queries.n = size_t(qcodes.shape(0));
    in.queries.labels = ql.view(in.queries.n, "query labels");
    in.db.codes = dbcodes.data();
    in.db.n = size_t(dbcodes.shape(0));
    in.db.words = words_for(bits);
    in.db.bits = bits;
    in.db.labels = dl.view(in.db.n, "database labels");
    require(in.queries.labels.words == in.db.labels.words, "query and database label bitmaps differ in width");
    return in;
}

std::vector<int64_t> ranks_of(const Array<int64_t>& ranks, int64_t N, const char* what) {
    require(ranks.ndim() == 1, std::string(what) + " must be 1-D");
    std::vector<int64_t> out(ranks.data(), ranks.data() + ranks.shape(0));
    for (int64_t k : out) require(k >= 1 && k <= N, std::string(what) + " must lie in [1, N]");
    return out;
}

// f(const T*) with T the C++ type of a native-byte-order bool / int8-64 / uint8 / float32-64 array
template <class F>
void with_value_type(const py::array& a, F&& f) {
    const py::dtype dt = a.dtype();
    require(dt.byteorder() != '>', "values must be in native byte order");
    const char kind = dt.kind();
    const size_t size = size_t(dt.itemsize());
    const void* p = a.data();
    if (kind == 'b' && size == 1) return f(static_cast<const bool*>(p));
    if (kind == 'u' && size == 1) return f(static_cast<const uint8_t*>(p));
    if (kind == 'i' && size == 1) return f(static_cast<const int8_t*>(p));
    if (kind == 'i' && size == 2) return f(static_cast<const int16_t*>(p));
    if (kind == 'i' && size == 4) return f(static_cast<const int32_t*>(p));
    if (kind == 'i' && size == 8) return f(static_cast<const int64_t*>(p));
    if (kind == 'f' && size == 4) return f(static_cast<const float*>(p));
    if (kind == 'f' && size == 8) return f(static_cast<const double*>(p));
    throw py::type_error("unsupported dtype for pack_rows (bool, uint8, int8-64, float32/64)");
}

template <class T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
    return py::array_t<T>(py::ssize_t(v.size()), v.data());
}

py::dict summary_dict(const Summary& s, size_t Q, size_t K) {
    py::dict d;
    py::array_t<double> ap({py::ssize_t(Q), py::ssize_t(K)});
    std::copy(s.ap.begin(), s.ap.end(), ap.mutable_data());
    d["ap"] = ap;
    d["radius_precision"] = to_numpy(s.radius_precision);
    d["radius_recall"] = to_numpy(s.radius_recall);
    d["rank_precision"] = to_numpy(s.rank_precision);
    d["rank_recall"] = to_numpy(s.rank_recall);
    d["queries_without_relevant"] = s.queries_without_relevant;
    return d;
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
    m.doc() = "Compiled Hamming ranking engine: counting-sort evaluation (mAP@k with tie modes, radius and rank "
              "PR) and top-k search over codes packed into uint64 words.";
    m.attr("MAX_BITS") = kMaxBits;

    m.def("isa", []() { return std::string(isa_name(active_isa())); }, "Popcount path in use.");
    m.def("best_isa", []() { return std::string(isa_name(best_isa())); }, "Fastest path this CPU supports.");
    m.def("runnable_isas", []() {
            std::vector<std::string> names;
            for (int isa = 0; isa <= static_cast<int>(best_isa()); ++isa) names.push_back(isa_name(static_cast<Isa>(isa)));
            return names;
        }, "Popcount paths this CPU can run, slowest first (the last is best_isa()).");
    m.def("set_isa", [](const std::string& name) { set_isa(isa_from_name(name.c_str())); }, py::arg("name"),
          "Force a popcount path (generic, popcnt, avx2, avx512); ValueError if the CPU lacks it.");
    m.def("default_threads", []() { return resolve_threads(0); });

    m.def(
        "evaluate",
        [](const Array<uint64_t>& qcodes, const Array<uint64_t>& dbcodes, int bits, std::optional<Array<int32_t>> qids,
           std::optional<Array<int32_t>> dbids, std::optional<Array<uint64_t>> qbits,
           std::optional<Array<uint64_t>> dbbits, const std::string& ties, const Array<int64_t>& ap_ranks,
           const Array<int64_t>& hit_ranks, int threads) {
            const Inputs in = make_inputs(qcodes, dbcodes, bits, LabelArgs{qids, qbits}, LabelArgs{dbids, dbbits});
            require(in.db.labels.ids != nullptr || in.db.labels.bitmaps != nullptr, "labels are required");
            const int64_t N = int64_t(in.db.n);
            const Ties mode = parse_ties(ties);
            const RankPlan plan(ranks_of(ap_ranks, N, "ap_ranks"), ranks_of(hit_ranks, N, "hit_ranks"),
                                mode == Ties::Index);
            Summary s;
            {
                py::gil_scoped_release release;
                s = evaluate(in.queries, in.db, mode, plan, threads);
            }
            return summary_dict(s, in.queries.n, plan.ap_ranks.size());
        },
        py::arg("query_codes"), py::arg("db_codes"), py::arg("bits"), py::arg("query_ids"), py::arg("db_ids"),
        py::arg("query_bitmaps"), py::arg("db_bitmaps"), py::arg("ties"), py::arg("ap_ranks"), py::arg("hit_ranks"),
        py::arg("threads") = 0);

    m.def(
        "reduce_buckets",
        [](const Array<int64_t>& n, const Array<int64_t>& r, int bits, int64_t N, const std::string& ties,
           const Array<int64_t>& ap_ranks, const Array<int64_t>& hit_ranks, std::optional<Array<double>> index_ap,
           std::optional<Array<double>> index_hits, int threads) {
            require(bits >= 1 && bits <= kMaxBits, "bits out of range");
            require(n.ndim() == 2 && r.ndim() == 2 && n.shape(0) == r.shape(0) && n.shape(1) == bits + 1 &&
                        r.shape(1) == bits + 1,
                    "n and r must both be Q x (bits + 1)");
            require(N >= 1, "N must be positive");
            const size_t Q = size_t(n.shape(0));
            const RankPlan plan(ranks_of(ap_ranks, N, "ap_ranks"), ranks_of(hit_ranks, N, "hit_ranks"), false);
            const Ties mode = parse_ties(ties);
            const double* iap = nullptr;
            const double* ihits = nullptr;
            if (mode == Ties::Index) {
                require(index_ap && index_hits, "index ties need index_ap and index_hits");
                require(index_ap->ndim() == 2 && size_t(index_ap->shape(0)) == Q &&
                            size_t(index_ap->shape(1)) == plan.ap_ranks.size(),
                        "index_ap must be Q x len(ap_ranks)");
                require(index_hits->ndim() == 2 && size_t(index_hits->shape(0)) == Q &&
                            size_t(index_hits->shape(1)) == plan.hit_ranks.size(),
                        "index_hits must be Q x len(hit_ranks)");
                iap = index_ap->data();
                ihits = index_hits->data();
            }
            Summary s;
            {
                py::gil_scoped_release release;
                s = reduce_buckets(n.data(), r.data(), Q, bits, N, mode, plan, iap, ihits, threads);
            }
            return summary_dict(s, Q, plan.ap_ranks.size());
        },
        py::arg("n"), py::arg("r"), py::arg("bits"), py::arg("n_database"), py::arg("ties"), py::arg("ap_ranks"),
        py::arg("hit_ranks"), py::arg("index_ap") = py::none(), py::arg("index_hits") = py::none(),
        py::arg("threads") = 0);

    m.def(
        "index_walk",
        [](const Array<uint16_t>& entries, const Array<int64_t>& n, const Array<int64_t>& r, int bits, int64_t N,
           const Array<int64_t>& ap_ranks, const Array<int64_t>& hit_ranks, int threads) {
            require(bits >= 1 && bits <= kMaxBits, "bits out of range");
            require(N >= 1 && uint64_t(N) < (uint64_t(1) << 32), "N out of range");
            require(n.ndim() == 2 && r.ndim() == 2 && n.shape(0) == r.shape(0) && n.shape(1) == bits + 1 &&
                        r.shape(1) == bits + 1,
                    "n and r must both be Q x (bits + 1)");
            const size_t Q = size_t(n.shape(0));
            require(entries.ndim() == 2 && size_t(entries.shape(0)) == Q, "entries must be Q x k");
            const size_t k = size_t(entries.shape(1));
            const RankPlan plan(ranks_of(ap_ranks, N, "ap_ranks"), ranks_of(hit_ranks, N, "hit_ranks"), true);
            for (const auto& cp : plan.checkpoints)
                require(size_t(cp.first) <= k, "entries must cover every rank in ap_ranks and hit_ranks");
            const uint16_t* e = entries.data();
            uint16_t largest = 0;  // max, then one check: a loop the compiler vectorises
            for (size_t i = 0; i < Q * k; ++i) largest = std::max(largest, e[i]);
            require((largest >> 1) <= bits, "entry distance beyond bits");
            const int64_t* np_ = n.data();
            const int64_t* rp = r.data();
            for (size_t qi = 0; qi < Q; ++qi) {
                int64_t total = 0;
                for (int d = 0; d <= bits; ++d) {
                    require(np_[qi * (bits + 1) + d] >= rp[qi * (bits + 1) + d] && rp[qi * (bits + 1) + d] >= 0,
                            "buckets must satisfy 0 <= r <= n");
                    total += np_[qi * (bits + 1) + d];
                }
                require(total == N, "every histogram must count N items");
            }
            py::array_t<double> ap({py::ssize_t(Q), py::ssize_t(plan.ap_ranks.size())});
            py::array_t<double> hits({py::ssize_t(Q), py::ssize_t(plan.hit_ranks.size())});
            double* app = ap.mutable_data();
            double* hp = hits.mutable_data();
            {
                py::gil_scoped_release release;
                index_walk(e, Q, k, np_, bits, plan, threads, app, hp);
            }
            return py::make_tuple(ap, hits);
        },
        py::arg("entries"), py::arg("n"), py::arg("r"), py::arg("bits"), py::arg("n_database"), py::arg("ap_ranks"),
        py::arg("hit_ranks"), py::arg("threads") = 0,
        "index-ties AP@k and hits@k from each query's top-k entries (distance << 1 | relevant) in database-index "
        "order; feed them to report_from_buckets(index_ap=..., index_hits=...).");

    m.def(
        "buckets",
        [](const Array<uint64_t>& qcodes, const Array<uint64_t>& dbcodes, int bits, std::optional<Array<int32_t>> qids,
           std::optional<Array<int32_t>> dbids, std::optional<Array<uint64_t>> qbits,
           std::optional<Array<uint64_t>> dbbits, int threads) {
            const Inputs in = make_inputs(qcodes, dbcodes, bits, LabelArgs{qids, qbits}, LabelArgs{dbids, dbbits});
            const py::ssize_t Q = py::ssize_t(in.queries.n), width = bits + 1;
            py::array_t<int64_t> n({Q, width}), r({Q, width});
            int64_t* np_ = n.mutable_data();
            int64_t* rp = r.mutable_data();
            {
                py::gil_scoped_release release;
                buckets(in.queries, in.db, threads, np_, rp);
            }
            return py::make_tuple(n, r);
        },
        py::arg("query_codes"), py::arg("db_codes"), py::arg("bits"), py::arg("query_ids") = py::none(),
        py::arg("db_ids") = py::none(), py::arg("query_bitmaps") = py::none(), py::arg("db_bitmaps") = py::none(),
        py::arg("threads") = 0);

    m.def(
        "pack_rows",
        [](const py::array& values, bool nonzero, bool msb_first, int threads) {
            require(values.ndim() == 2 && values.shape(0) >= 1 && values.shape(1) >= 1,
                    "values must be a non-empty 2-D array");
            require(values.flags() & py::array::c_style, "values must be C-contiguous");
            const size_t rows = size_t(values.shape(0)), cols = size_t(values.shape(1));
            py::array_t<uint64_t> out({py::ssize_t(rows), py::ssize_t((cols + 63) / 64)});
            uint64_t* o = out.mutable_data();
            with_value_type(values, [&](const auto* v) {
                py::gil_scoped_release release;
                pack_rows(v, rows, cols, nonzero ? BitRule::NonZero : BitRule::NonNegative,
                          msb_first ? BitOrder::MsbFirst : BitOrder::LsbFirst, threads, o);
            });
            return out;
        },
        py::arg("values"), py::arg("nonzero"), py::arg("msb_first"), py::arg("threads") = 0,
        "Rows of values to rows of uint64 bit words: bit = value != 0 (nonzero) or value >= 0; column c at bit "
        "c % 64 of word c / 64, or with msb_first in np.packbits' byte order.");

    m.def(
        "search",
        [](const Array<uint64_t>& qcodes, const Array<uint64_t>& dbcodes, int bits, int64_t k, int threads) {
            const Inputs in = make_inputs(qcodes, dbcodes, bits, LabelArgs{}, LabelArgs{});
            require(k >= 1 && size_t(k) <= in.db.n, "k must be in [1, N]");
            const py::ssize_t Q = py::ssize_t(in.queries.n);
            py::array_t<int64_t> idx({Q, py::ssize_t(k)});
            py::array_t<int32_t> dist({Q, py::ssize_t(k)});
            int64_t* ip = idx.mutable_data();
            int32_t* dp = dist.mutable_data();
            {
                py::gil_scoped_release release;
                search(in.queries, in.db, size_t(k), threads, ip, dp);
            }
            return py::make_tuple(idx, dist);
        },
        py::arg("query_codes"), py::arg("db_codes"), py::arg("bits"), py::arg("k"), py::arg("threads") = 0);

    m.def(
        "bank_likelihood",
        [](const Array<float>& h, const Array<float>& bank, const Array<uint32_t>& labels,
           const Array<uint32_t>& bank_labels, int threads) {
            require(h.ndim() == 2 && bank.ndim() == 2 && labels.ndim() == 2 && bank_labels.ndim() == 2,
                    "h, bank, labels and bank_labels must be 2-D");
            const size_t b = size_t(h.shape(0)), q = size_t(h.shape(1)), n = size_t(bank.shape(0));
            const size_t words = size_t(labels.shape(1));
            require(size_t(bank.shape(1)) == q, "h and bank must have the same number of columns");
            require(size_t(labels.shape(0)) == b && size_t(bank_labels.shape(0)) == n &&
                        size_t(bank_labels.shape(1)) == words,
                    "labels must be b x words and bank_labels n x words");
            py::array_t<float> grad({py::ssize_t(b), py::ssize_t(q)});
            float* g = grad.mutable_data();
            double total;
            {
                py::gil_scoped_release release;
                total = bank_likelihood(h.data(), b, bank.data(), n, q, labels.data(), bank_labels.data(), words, g,
                                        threads);
            }
            return py::make_tuple(total, grad);
        },
        py::arg("h"), py::arg("bank"), py::arg("labels"), py::arg("bank_labels"), py::arg("threads") = 0,
        "DPSH's likelihood of a batch against a memory bank: (sum_ij softplus(T_ij) - s_ij T_ij, its gradient in h) "
        "with T = h bank^T, s_ij = 1 when the uint32 label bitmaps share a bit (float32, one fused pass).");
}
