"""The math the pairwise and triplet methods share (DPSH, HashNet, DTSH, IDHN): a stable softplus, the pairwise
negative log-likelihood softplus(Θ) − sΘ, the triplet likelihood and the quantisation error."""
from __future__ import annotations

import torch


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


def quantization_error(u: torch.Tensor) -> torch.Tensor:
    """(u − sign u)² per entry (sign without gradient, as the references)."""
    return (u - u.detach().sign()).pow(2)
