// DPSH's pairwise likelihood of a training batch against a memory bank of every training image, fused into one
// pass over the bank (the training side of the engine: float32 in, numpy only, no torch).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shc {

// With Θ_ij = h_i·U_j and s_ij = 1 when the label bitmaps of batch row i and bank row j share a bit, else 0:
//   returns Σ_ij softplus(Θ_ij) − s_ij Θ_ij   and writes   grad[i] = Σ_j (σ(Θ_ij) − s_ij) U_j   (its gradient in h).
// h: b×q, bank: n×q float32 row-major; labels: b×words, bank_labels: n×words uint32 bitmaps. The result does not
// depend on the thread count: the bank is cut into chunks fixed by n alone, whose partial sums are added in order.
double bank_likelihood(const float* h, size_t b, const float* bank, size_t n, size_t q, const uint32_t* labels,
                       const uint32_t* bank_labels, size_t words, float* grad, int threads);

}  // namespace shc
