// Run-time choice of the popcount path: detected once, overridable by SHC_ISA or set_isa() (tests use both
// to exercise every path the CPU can run).
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "hamming.h"

namespace shc {

namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")) return Isa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return Isa::Avx2;
    if (__builtin_cpu_supports("popcnt")) return Isa::Popcnt;
#endif
    return Isa::Generic;
}

Isa initial() {
    Isa best = detect();
    const char* env = std::getenv("SHC_ISA");
    if (env == nullptr || *env == '\0') return best;
    Isa wanted = isa_from_name(env);  // unknown names throw at import: a typo must not pass silently
    return static_cast<int>(wanted) < static_cast<int>(best) ? wanted : best;
}

std::atomic<int>& current() {
    static std::atomic<int> isa{static_cast<int>(initial())};
    return isa;
}

}  // namespace

Isa best_isa() {
    static const Isa best = detect();
    return best;
}

Isa active_isa() { return static_cast<Isa>(current().load()); }

void set_isa(Isa isa) {
    if (static_cast<int>(isa) > static_cast<int>(best_isa()))
        throw std::invalid_argument(std::string("this CPU cannot run the ") + isa_name(isa) + " path (best: " +
                                    isa_name(best_isa()) + ")");
    current().store(static_cast<int>(isa));
}

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Generic: return "generic";
        case Isa::Popcnt: return "popcnt";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
    }
    return "unknown";
}

Isa isa_from_name(const char* name) {
    for (Isa isa : {Isa::Generic, Isa::Popcnt, Isa::Avx2, Isa::Avx512})
        if (std::strcmp(name, isa_name(isa)) == 0) return isa;
    throw std::invalid_argument(std::string("unknown ISA '") + name + "' (expected generic, popcnt, avx2 or avx512)");
}

HammingFn hamming_kernel(size_t words) {
    switch (active_isa()) {
        case Isa::Avx512: return hamming_avx512(words);
        case Isa::Avx2: return hamming_avx2(words);
        case Isa::Popcnt: return hamming_popcnt(words);
        default: return hamming_generic(words);
    }
}

}  // namespace shc
