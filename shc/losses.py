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


def check_center_loss_inputs(u: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor | None) -> None:
    """Shape/dtype/device checks shared by every path (no device sync: class-id range is not checked here)."""
    if not isinstance(u, torch.Tensor) or not isinstance(centers, torch.Tensor):
        raise TypeError("u and centers must be torch tensors")
    if u.dim() != 2 or not u.is_floating_point():
        raise ValueError(f"u must be a floating B x q tensor, got {tuple(u.shape)} {u.dtype}")
    if u.shape[0] == 0 or u.shape[1] == 0:
        raise ValueError(f"u must be non-empty, got shape {tuple(u.shape)}")
    if centers.dim() != 2 or centers.shape[1] != u.shape[1]:
        raise ValueError(f"centers must be 2-D with q={u.shape[1]} columns, got {tuple(centers.shape)}")
    if centers.dtype == torch.bool or centers.is_complex():
        raise TypeError(f"centers must hold real ±1 values, got {centers.dtype}")
    if centers.device != u.device:
        raise ValueError(f"centers on {centers.device} but u on {u.device}")
    if labels is None:
        if centers.shape[0] != u.shape[0]:
            raise ValueError(f"without labels, centers must be the B x q target matrix {tuple(u.shape)}, "
                             f"got {tuple(centers.shape)}")
        return
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != u.shape[0]:
        raise ValueError(f"labels must be a 1-D tensor of {u.shape[0]} class ids")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
    if labels.device != u.device:
        raise ValueError(f"labels on {labels.device} but u on {u.device}")


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
