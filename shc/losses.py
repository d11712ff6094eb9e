"""Stage-3 center loss: the one definition every training path calls.

L = mean BCE-with-logits(2u, (t+1)/2) + lambd * mean((|tanh u| - 1)^2)

(tanh(u)+1)/2 == sigmoid(2u), so the paper's BCE on (tanh u + 1)/2 is a BCE-with-logits on 2u —
the numerically stable form (torch's BCELoss clamps log() at -100 instead).
CUDA tensors go to the fused Triton kernel (shc.kernels.center_loss) unless SHC_DISABLE_TRITON=1;
everything else uses the torch reference below.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from shc.kernels.contracts import check_center_loss_inputs


def center_targets(centers: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """±1 targets per sample: rows of the C×q center table by class id, or an explicit B×q ±1 matrix."""
    if labels is None:
        return centers
    return centers.index_select(0, labels.long())


def center_loss_reference(u: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor | None = None,
                          lambd: float = 1e-4) -> torch.Tensor:
    """Plain torch reference (fp32 math). u: B×q pre-tanh outputs.

    labels given (1-D class ids): targets = centers[labels] with centers C×q.
    labels None: centers is already the B×q ±1 target matrix (multi-label).
    """
    t = center_targets(centers, labels).to(torch.float32)
    u32 = u.to(torch.float32)
    bce = F.binary_cross_entropy_with_logits(2.0 * u32, (t + 1.0) / 2.0)
    quant = (u32.tanh().abs() - 1.0).pow(2).mean()
    return bce + lambd * quant


def _use_triton(u: torch.Tensor, centers: torch.Tensor) -> bool:
    # the kernel treats centers as constants; a trainable center table takes the autograd reference
    return (u.is_cuda and os.environ.get("SHC_DISABLE_TRITON", "0") != "1"
            and not (centers.requires_grad and torch.is_grad_enabled()))


def center_loss(u: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor | None = None,
                lambd: float = 1e-4) -> torch.Tensor:
    """Center loss with automatic dispatch (fused Triton kernel on CUDA, torch reference elsewhere)."""
    check_center_loss_inputs(u, centers, labels)
    if _use_triton(u, centers):
        try:
            from shc.kernels.center_loss import apply_fused_center_loss
        except ImportError:  # triton missing on this CUDA install: the reference is exact, only slower
            pass
        else:
            return apply_fused_center_loss(u, centers, labels, lambd)
    return center_loss_reference(u, centers, labels, lambd)
