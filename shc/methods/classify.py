"""What the classifier-headed methods (GreedyHash, OrthoHash, LTH) share: cross-entropy on class ids or on
multi-hot labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from shc.methods.base import as_multi_hot


def label_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C) target distributions: one-hot rows for class ids, y / Σy for multi-hot rows (label-normalised; an
    empty row stays all zero, so it adds nothing to the loss instead of 0/0)."""
    y = as_multi_hot(labels, num_classes)
    return y / y.sum(1, keepdim=True).clamp(min=1.0)


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                       class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean over the batch of −Σ_c w_c·t_c·log softmax(logits)_c with t = label_targets(labels): plain cross-entropy
    for class ids, FIRe's label-normalised soft cross-entropy for multi-hot rows; w (C,) weights the classes
    (1 when None). log_softmax: no underflow for confident logits."""
    targets = label_targets(labels, logits.shape[1])
    if class_weights is not None:
        targets = targets * class_weights
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
