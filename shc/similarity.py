"""Stage-1 class similarity S (C×C) from classifier logits: pure, batched torch functions.

Accumulation (per batch, no Python loop over samples): each image adds a masked softmax of its logits to the
rows of its classes in S_raw. Then ``finalize_similarity`` symmetrises, row-normalises and sets diag = 1,
exactly as in ../shared/reference/shc-method.md (stage 1). Single-label labels are 1-D class ids, multi-label
labels are N×C multi-hot.

Options
- mask="gt" (default): mask the ground-truth class(es); mask="argmax": mask the arg-max prediction instead
  (the paper's figure); rows are always the ground-truth classes.
- multilabel="negatives" (default): for each positive label c, add to row c the softmax over the image's
  negative labels, weighted 1/|positives|. multilabel="first": the public code's rule — only the first positive
  label's row, with only that label masked.
"""
from __future__ import annotations

import torch

__all__ = ["MASKS", "MULTILABEL_RULES", "accumulate_similarity", "finalize_similarity", "class_similarity"]

MASKS = ("gt", "argmax")
MULTILABEL_RULES = ("negatives", "first")


def _check(logits: torch.Tensor, labels: torch.Tensor, mask: str, multilabel: str) -> None:
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if multilabel not in MULTILABEL_RULES:
        raise ValueError(f"multilabel must be one of {MULTILABEL_RULES}, got {multilabel!r}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be B×C, got shape {tuple(logits.shape)}")
    if labels.dim() == 1:
        if labels.shape[0] != logits.shape[0]:
            raise ValueError("labels and logits disagree on the batch size")
        if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"class ids must lie in [0, {logits.shape[1]})")
    elif labels.dim() == 2:
        if labels.shape != logits.shape:
            raise ValueError(f"multi-hot labels must be B×C = {tuple(logits.shape)}, got {tuple(labels.shape)}")
    else:
        raise ValueError("labels must be 1-D class ids or a 2-D multi-hot matrix")


def accumulate_similarity(s_raw: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, *,
                          mask: str = "gt", multilabel: str = "negatives") -> torch.Tensor:
    """Add one batch into ``s_raw`` (C×C float64, modified in place and returned)."""
    _check(logits, labels, mask, multilabel)
    num_classes = logits.shape[1]
    logits = logits.detach().to(torch.float64)
    if labels.dim() == 1:
        positives = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float64)
    else:
        positives = (labels != 0).to(torch.float64)
        if multilabel == "first":
            # public code: label = first positive; an image without positives contributes nothing
            first = positives.argmax(1)
            positives = torch.nn.functional.one_hot(first, num_classes).to(torch.float64) \
                * positives.amax(1, keepdim=True)
    if mask == "gt":
        masked = positives.bool()  # "first" already reduced positives to the first label
    else:
        masked = torch.nn.functional.one_hot(logits.argmax(1), num_classes).bool()
    probs = torch.softmax(logits.masked_fill(masked, float("-inf")), dim=1)
    probs = torch.nan_to_num(probs, nan=0.0)  # every class masked (C = 1 or all positive): nothing to add
    weights = positives / positives.sum(1, keepdim=True).clamp_min(1.0)
    s_raw += weights.T @ probs.to(s_raw.device)  # row c += sum over images with c positive of w · p'
    return s_raw


def finalize_similarity(s_raw: torch.Tensor) -> torch.Tensor:
    """Symmetrise, row-normalise to [-1, 1] around the row mean (diagonal included), then S_ii = 1."""
    s = (s_raw + s_raw.T) / 2
    mu = s.mean(1, keepdim=True)
    scale = torch.maximum((s.amax(1, keepdim=True) - mu).abs(), (s.amin(1, keepdim=True) - mu).abs())
    s = (s - mu) / torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant row stays 0
    s.fill_diagonal_(1.0)
    return s


def class_similarity(logits: torch.Tensor, labels: torch.Tensor, *, mask: str = "gt",
                     multilabel: str = "negatives") -> torch.Tensor:
    """S from all logits at once (N×C) — the one-call form of accumulate + finalize."""
    s_raw = torch.zeros(logits.shape[1], logits.shape[1], dtype=torch.float64, device=logits.device)
    return finalize_similarity(accumulate_similarity(s_raw, logits, labels, mask=mask, multilabel=multilabel))
