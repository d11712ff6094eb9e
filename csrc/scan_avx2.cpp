// The AVX2 batch kernel (scan.h): keys of kBatch queries for a block of items, 32 items per vector, from the
// regrouped codes and per-query nibble tables, while counting the previous block's keys.
#include "scan.h"

#include <algorithm>

#include "popcount_avx2.h"  // SHC_AVX2

namespace shc {

void nibble_tables(const uint8_t* code, size_t code_bytes, uint8_t* out) {
    // a table: this file is compiled for any x86-64, where __builtin_popcount is a libgcc call per entry
    constexpr uint8_t kNibbleBits[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};
    for (size_t b = 0; b < code_bytes; ++b)
        for (unsigned half = 0; half < 2; ++half) {
            const unsigned nibble = (code[b] >> (4 * half)) & 0xfu;
            for (unsigned v = 0; v < 32; ++v)  // the 16 entries twice: vpshufb looks up within each 128-bit lane
                out[(2 * b + half) * 32 + v] = uint8_t(2 * kNibbleBits[nibble ^ (v & 0xfu)]);
        }
}

// out of line: inlined into the kernel, its registers spill the kernel's accumulators (measured slower)
__attribute__((noinline)) void count_pending(const PendingKeys& pending, size_t from, size_t to) {
    size_t i = from;
    for (; i + 8 <= to; i += 8) {  // eight keys per load
        uint64_t k[kBatch];
        for (size_t j = 0; j < kBatch; ++j) std::memcpy(&k[j], pending.keys[j] + i, sizeof(uint64_t));
        for (unsigned s = 0; s < 64; s += 8)
            for (size_t j = 0; j < kBatch; ++j) ++pending.hist[j][(k[j] >> s) & 0xff];
    }
    for (; i < to; ++i)
        for (size_t j = 0; j < kBatch; ++j) ++pending.hist[j][pending.keys[j][i]];
}

namespace {

// Class ids of a group are stored as items 0-7, 16-23, 8-15, 24-31, so that the byte pack of the two 16-lane
// compares (which interleaves 128-bit lanes) gives the 32 masks in item order.
inline size_t grouped_id_slot(size_t i) { return (i & ~size_t(31)) + ((i & 8) << 1 | (i & 16) >> 1 | (i & 7)); }

}  // namespace

bool batch_kernel_fits(const Database& db) {
    if (static_cast<int>(active_isa()) < static_cast<int>(Isa::Avx2) || db.bits > kMaxByteKeyBits) return false;
    if (db.labels.ids != nullptr) {
        for (size_t i = 0; i < db.n; ++i)
            if (uint32_t(db.labels.ids[i]) >= kNoClass) return false;
        return true;
    }
    return db.labels.bitmaps != nullptr && db.labels.words <= 2;
}

#if defined(__x86_64__) || defined(__i386__)

namespace {

SHC_AVX2 inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// relevant = same class id: -1 bytes where item 32 g + i of the block has query j's class
struct SameClass {
    const uint16_t* ids;  // the block's grouped ids
    const uint16_t* query_ids;
    SHC_AVX2 __m256i mask(size_t j, size_t g) const {
        const __m256i q = _mm256_set1_epi16(short(query_ids[j]));
        return _mm256_packs_epi16(_mm256_cmpeq_epi16(load(ids + kGroup * g), q),
                                  _mm256_cmpeq_epi16(load(ids + kGroup * g + 16), q));
    }
};

// relevant = bit 32 g + i of query j's relevance bits of the block
struct RelevantBits {
    const uint64_t* bits;
    SHC_AVX2 __m256i mask(size_t j, size_t g) const {
        uint32_t word;
        std::memcpy(&word, reinterpret_cast<const uint32_t*>(bits + j * kBlockWords) + g, sizeof word);
        const __m256i byte_of_item = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                                      2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit_of_item = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
        const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(word)), byte_of_item);
        return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_item), bit_of_item);
    }
};

// groups of vector work between two count_pending calls: each call reloads the batch's pointers and registers,
// so a call per group cost a few percent (every 4 groups: 1-7% faster than every group, (a), engine A/B)
constexpr size_t kCountEvery = 4;

template <class Relevance>
SHC_AVX2 void batch_keys(const Database& db, const BatchBlock& block, const Relevance& relevance,
                         const PendingKeys& pending) {
    const size_t bytes = db.code_bytes, groups = (block.count + kGroup - 1) / kGroup;
    const uint8_t* codes = db.grouped_codes + block.begin * bytes;
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t g = 0; g < groups; ++g) {
        __m256i acc[kBatch];
        for (size_t j = 0; j < kBatch; ++j) acc[j] = _mm256_setzero_si256();
        const uint8_t* group = codes + g * bytes * kGroup;
        for (size_t b = 0; b < bytes; ++b) {
            const __m256i x = load(group + b * kGroup);
            const __m256i lo = _mm256_and_si256(x, low), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
            const uint8_t* t = block.tables + 2 * b * kGroup;
            for (size_t j = 0; j < kBatch; ++j, t += 2 * bytes * kGroup)
                acc[j] = _mm256_add_epi8(acc[j], _mm256_add_epi8(_mm256_shuffle_epi8(load(t), lo),
                                                                 _mm256_shuffle_epi8(load(t + kGroup), hi)));
        }
        if (block.next_keys[0] != nullptr && g % 2 == 0)  // one 64-byte line per query every other group
            for (size_t j = 0; j < kBatch; ++j) __builtin_prefetch(block.next_keys[j] + kGroup * g, 1);
        const bool full = kGroup * (g + 1) <= block.count;
        for (size_t j = 0; j < kBatch; ++j) {
            // key = doubled distance + 1 where relevant (the mask is -1 there)
            const __m256i key = _mm256_sub_epi8(acc[j], relevance.mask(j, g));
            if (full) {
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(block.keys[j] + kGroup * g), key);
            } else {  // the block's last, partial group: the rows of keys end there
                alignas(32) uint8_t tail[kGroup];
                _mm256_store_si256(reinterpret_cast<__m256i*>(tail), key);
                std::memcpy(block.keys[j] + kGroup * g, tail, block.count - kGroup * g);
            }
        }
        if ((g + 1) % kCountEvery == 0 && kGroup * (g + 1) <= pending.count)
            count_pending(pending, kGroup * (g + 1 - kCountEvery), kGroup * (g + 1));
    }
    // the rest, from the end of the last stride the loop counted
    const size_t counted = kGroup * (std::min(groups, pending.count / kGroup) / kCountEvery * kCountEvery);
    count_pending(pending, counted, pending.count);
}

SHC_AVX2 void batch_keys_ids(const Database& db, const BatchBlock& block, const PendingKeys& pending) {
    batch_keys(db, block, SameClass{db.grouped_ids + block.begin, block.query_ids}, pending);
}

SHC_AVX2 void batch_keys_bits(const Database& db, const BatchBlock& block, const PendingKeys& pending) {
    batch_keys(db, block, RelevantBits{block.relevant}, pending);
}

}  // namespace

BatchKernel batch_key_kernel(const Database& db) {
    if (db.grouped_codes == nullptr) return nullptr;
    return db.grouped_ids != nullptr ? batch_keys_ids : batch_keys_bits;
}

#else
BatchKernel batch_key_kernel(const Database&) { return nullptr; }
#endif

Database with_scan_layout(const Database& db, ScanLayout& storage, int threads) {
    Database out = db;
    if (!batch_kernel_fits(db)) return out;
    const size_t padded = (db.n + kGroup - 1) / kGroup * kGroup, bytes = (size_t(db.bits) + 7) / 8;
    const size_t blocks = (db.n + kBlock - 1) / kBlock, labels = 64 * db.labels.words;
    storage.codes.assign(padded * bytes, 0);  // padding items: code 0, no label; their keys are never kept
    out.grouped_codes = storage.codes.data();
    out.code_bytes = bytes;
    if (db.labels.ids != nullptr) {
        storage.ids.assign(padded, 0);
        out.grouped_ids = storage.ids.data();
    } else {
        storage.items_by_label.assign(blocks * labels * kBlockWords, 0);
        out.items_by_label = storage.items_by_label.data();
    }
    // block by block on every thread: each block's items fill their own part of each copy
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long long k = 0; k < static_cast<long long>(blocks); ++k) {
        const size_t begin = size_t(k) * kBlock, end = std::min(begin + kBlock, db.n);
        for (size_t i = begin; i < end; ++i) {
            const uint8_t* code = reinterpret_cast<const uint8_t*>(db.codes + i * db.words);
            uint8_t* group = storage.codes.data() + (i / kGroup) * bytes * kGroup + i % kGroup;
            for (size_t b = 0; b < bytes; ++b) group[b * kGroup] = code[b];
        }
        if (db.labels.ids != nullptr) {
            for (size_t i = begin; i < end; ++i) storage.ids[grouped_id_slot(i)] = uint16_t(db.labels.ids[i]);
            continue;
        }
        uint64_t* block_bits = storage.items_by_label.data() + size_t(k) * labels * kBlockWords;
        for (size_t i = begin; i < end; ++i)
            for (size_t w = 0; w < db.labels.words; ++w)
                for (uint64_t bits = db.labels.bitmaps[i * db.labels.words + w]; bits != 0; bits &= bits - 1) {
                    const size_t label = 64 * w + size_t(__builtin_ctzll(bits));
                    block_bits[label * kBlockWords + (i % kBlock) / 64] |= uint64_t(1) << (i % 64);
                }
    }
    return out;
}

}  // namespace shc
