"""GreedyHash (Su, Zhang, Han, Tian, NeurIPS 2018): a linear hash layer h, sign(h) through a straight-through
estimator into a bias-free linear classifier trained with it; cross-entropy plus a cubic penalty that keeps |h|
near 1 (the straight-through gradient ignores how far h is from ±1).

L = CE(W·sign(h), y) + α·mean | |h| − 1 |³, α = 0.1 (official code and DeepHash-pytorch for CIFAR; 1 for ImageNet).
Multi-label: FIRe's label-normalised soft cross-entropy (the official code and DeepHash-pytorch train on the first
positive label only).
"""
from __future__ import annotations

import torch
from torch import nn

from shc.methods.base import Method
from shc.methods.classify import soft_cross_entropy


class SignSTE(torch.autograd.Function):
    """sign(h) forward (sign(0) = +1, the codes' convention), the identity backward: ∂L/∂h := ∂L/∂sign(h)."""

    @staticmethod
    def forward(ctx, h):
        return torch.where(h >= 0, 1.0, -1.0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class GreedyHashHead(nn.Module):
    """h = Linear(feat, q)(x); in training also the logits Linear(q, C, bias=False)(sign_ste(h)) — the classifier
    belongs to the head, so the optimiser, DDP and the checkpoint have it."""

    def __init__(self, num_features: int, bits: int, num_classes: int):
        super().__init__()
        self.encode = nn.Linear(num_features, bits)
        self.classify = nn.Linear(bits, num_classes, bias=False)

    def forward(self, x):
        h = self.encode(x)
        return (h, self.classify(SignSTE.apply(h))) if self.training else h


def greedyhash_loss(h: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    return soft_cross_entropy(logits, labels) + alpha * (h.float().abs() - 1).abs().pow(3).mean()


class GreedyHash(Method):
    name = "greedyhash"
    citation = ("Su, Zhang, Han, Tian. Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN. "
                "NeurIPS 2018")
    options = {"alpha": 0.1}

    def head(self, num_features):
        return GreedyHashHead(num_features, self.ctx.bits, self.ctx.num_classes)

    def loss(self, outputs, labels, indices):
        h, logits = outputs
        return greedyhash_loss(h, logits, labels, self.opts["alpha"])
