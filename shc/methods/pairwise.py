"""The math the pairwise and triplet methods share (DPSH, HashNet, DTSH, IDHN): a stable softplus, the pairwise
negative log-likelihood softplus(Θ) − sΘ (against a whole memory bank: torch in chunks, or the engine's fused
kernel), the triplet likelihood and the quantisation error."""
from __future__ import annotations

import numpy as np
import torch

from shc._compiled import _engine


class _Softplus(torch.autograd.Function):
    """log(1 + e^x) as max(x, 0) + log(1 + e^−|x|): no overflow for any x; with log rather than log1p (which
    torch does not vectorise on the CPU: several times slower on a B×N memory-bank matrix; the absolute error,
    below 6e-8, is far under the float32 resolution of the sums it feeds). Gradient σ(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.abs().neg_().exp_().add_(1).log_().add_(x.clamp(min=0))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.sigmoid(x).mul_(grad)


def softplus(x: torch.Tensor) -> torch.Tensor:
    return _Softplus.apply(x)


def pair_likelihood(theta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """−log p(s | Θ) of each pair with p(s = 1) = σ(Θ): softplus(Θ) − sΘ (s may be graded, as IDHN's)."""
    return softplus(theta) - s * theta


class _SumWithGradient(torch.autograd.Function):
    """A scalar sum over a batch u and its gradient in u, both from one pass ``compute(u) -> (total, grad)``:
    nothing is kept for backward but the B×q gradient, which backward scales."""

    @staticmethod
    def forward(ctx, u, compute):
        total, grad = compute(u)
        ctx.save_for_backward(grad)
        return total.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_total):
        (grad,) = ctx.saved_tensors
        return grad * grad_total, None


def _likelihood_in_chunks(u, bank, labels, bank_labels, one_label, chunk):
    """Σ_ij softplus(Θ_ij) − s_ij Θ_ij over a batch (u, B×q) and a memory bank (U, N×q), Θ = ½uUᵀ, with its
    gradient with respect to u (the bank side carries none) computed in the same pass over the bank, in column
    chunks that stay in cache: per entry of Θ one |·|, exp, log and sigmoid. Σ max(Θ, 0) = (ΣΘ + Σ|Θ|)/2 with ΣΘ
    from the row sums. ``one_label``: every row has at most one label, so S = A·Yᵀ and SU = A(YᵀU): no B×N
    similarity matrix at all; else s is formed chunk by chunk."""
    h = 0.5 * u
    grad = torch.zeros_like(u)
    total = torch.zeros((), dtype=torch.float64, device=u.device)
    abs_sum = torch.zeros((), dtype=torch.float64, device=u.device)
    for start in range(0, len(bank), chunk):
        rows = bank[start:start + chunk]
        theta = h @ rows.T
        e = theta.abs()
        abs_sum += e.sum()  # float32 sums (a float64 one converts first: slower), totals in float64
        total += e.neg_().exp_().add_(1).log_().sum()  # log(1 + e^−|Θ|)
        if one_label:
            theta.sigmoid_()
        else:
            s = (labels @ bank_labels[start:start + chunk].T > 0).to(theta.dtype)
            total -= torch.dot(s.view(-1), theta.view(-1)).double()
            theta.sigmoid_().sub_(s)
        grad.addmm_(theta, rows)  # Σ_j (σ(Θ_ij) − s_ij) U_j
    total += 0.5 * (torch.dot(h.sum(0), bank.sum(0)).double() + abs_sum)
    if one_label:
        su = labels @ (bank_labels.T @ bank)  # Σ_j s_ij U_j
        total -= (h * su).sum(dtype=torch.float64)
        grad -= su
    return total, grad.mul_(0.5)


def _likelihood_in_engine(u, bank, label_bitmaps, bank_bitmaps):
    """_likelihood_in_chunks' sum and gradient from shc._engine.bank_likelihood: one fused pass over the bank
    (float32, CPU; as many threads as torch uses, the result the same for any number)."""
    total, grad = _engine.bank_likelihood((0.5 * u).contiguous().numpy(), bank.contiguous().numpy(),
                                          label_bitmaps.numpy().view(np.uint32),
                                          bank_bitmaps.numpy().view(np.uint32), torch.get_num_threads())
    return torch.tensor(total), torch.from_numpy(grad).mul_(0.5)  # dΘ/du = ½U


def bank_likelihood_torch(u: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, bank_labels: torch.Tensor,
                          one_label: bool, chunk: int = 4096) -> torch.Tensor:
    """Σ_ij softplus(Θ_ij) − s_ij Θ_ij, Θ = ½ u_iᵀU_j, s_ij = [y_i·Y_j > 0] (multi-hot ``labels`` B×C and
    ``bank_labels`` N×C); gradient through ``u`` only (DPSH against its memory bank). Any device and dtype."""
    bank = bank.detach()
    return _SumWithGradient.apply(u, lambda v: _likelihood_in_chunks(v, bank, labels, bank_labels, one_label, chunk))


def bank_likelihood(u: torch.Tensor, bank, labels: torch.Tensor) -> torch.Tensor:
    """bank_likelihood_torch of ``u`` (B×q) and multi-hot ``labels`` (B×C) against a MemoryBank: through the
    engine's fused kernel for float32 on the CPU (several times faster: no B×N matrix is ever formed), else torch."""
    if u.device.type == "cpu" and u.dtype == bank.codes.dtype == torch.float32:
        bitmaps = label_bitmaps(labels)
        return _SumWithGradient.apply(u, lambda v: _likelihood_in_engine(v, bank.codes, bitmaps, bank.bitmaps))
    return bank_likelihood_torch(u, bank.codes, labels, bank.labels, bank.one_label)


def label_bitmaps(multi_hot: torch.Tensor) -> torch.Tensor:
    """(rows, ⌈C/32⌉) int32 label bitmaps of multi-hot (rows, C) labels: label c is bit c % 32 of word c // 32
    (as uint32, what shc._engine.bank_likelihood reads)."""
    rows, classes = multi_hot.shape
    words = (classes + 31) // 32
    bits = torch.zeros(rows, words * 32, dtype=torch.int32, device=multi_hot.device)
    bits[:, :classes] = multi_hot > 0
    weights = torch.ones(32, dtype=torch.int32, device=multi_hot.device) << torch.arange(32, dtype=torch.int32,
                                                                                          device=multi_hot.device)
    return (bits.view(rows, words, 32) * weights).sum(-1, dtype=torch.int32)  # bit 31 is the sign: no overflow


def triplet_likelihood(theta_pos: torch.Tensor, theta_neg: torch.Tensor, margin: float, clamp: bool = False,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """DTSH's −log σ(Θ_ij − Θ_ik − α) over every (positive j, negative k) of each anchor: ``theta_pos`` (R, P) and
    ``theta_neg`` (R, M), ``weights`` (R, P, M) selecting triplets (None: all). Each anchor's mean over its
    triplets, then the mean over the anchors that have any; 0 (with a gradient) when none has.
    ``clamp``: DH's clamp of the margin term to [−100, 50] (it zeroes the gradient of badly violated triplets)."""
    t = theta_pos[:, :, None] - theta_neg[:, None, :] - margin
    if clamp:
        t = t.clamp(-100, 50)
    loss = softplus(-t)
    if weights is None:
        return loss.mean() if loss.numel() else theta_pos.sum() * 0
    count = weights.sum((1, 2))
    per_anchor = (loss * weights).sum((1, 2))[count > 0] / count[count > 0]
    return per_anchor.mean() if per_anchor.numel() else theta_pos.sum() * 0


def draw_true(weights: torch.Tensor, n: int, generator: torch.Generator, block: int | None = None) -> torch.Tensor:
    """(R, n) column indices drawn uniformly, with replacement, among the entries equal to 1 of each row of the
    0/1 float ``weights`` (R, N); rows without any give arbitrary indices. Exact, and much cheaper than
    torch.multinomial on R×N weights: count the ones per block of ``block`` columns (one reduction), pick the
    block of the k-th one from the blocks' running counts, then its position inside that block. The default block,
    sqrt(N/n), balances the two (N/block running counts against n·block entries looked at per row)."""
    rows, width = weights.shape
    block = block or max(1, round((width / n) ** 0.5))
    full = width - width % block
    counts = weights[:, :full].view(rows, full // block, block).sum(-1)
    if full < width:
        counts = torch.cat([counts, weights[:, full:].sum(1, keepdim=True)], 1)
    ends = counts.cumsum(1)  # ones up to each block's end (exact in float32 below 2^24)
    total = ends[:, -1:]
    k = (torch.rand(rows, n, generator=generator, device=weights.device) * total).floor_()
    k = torch.minimum(k, total - 1).clamp_(min=0)
    # the block holding the k-th one (0-based k); a row without any points past its end: kept in range
    which = torch.searchsorted(ends, k, right=True).clamp_(max=counts.shape[1] - 1)
    before = torch.where(which > 0, ends.gather(1, (which - 1).clamp(min=0)), 0)
    columns = which[..., None] * block + torch.arange(block, device=weights.device)
    inside = weights.gather(1, columns.clamp(max=width - 1).view(rows, -1)).view(rows, n, block)
    inside = inside * (columns < width)
    offset = (inside.cumsum(-1) > (k - before)[..., None]).int().argmax(-1)
    return which * block + offset


def quantization_error(u: torch.Tensor) -> torch.Tensor:
    """(u − sign u)² per entry (sign without gradient, as the references)."""
    return (u - u.detach().sign()).pow(2)
