"""VTDH (probably Xiao, Cao, Wang, Cheng, Yuan, "Deep hashing image retrieval based on hybrid neural network and
optimized metric learning", Knowledge-Based Systems 284, 2024; code ``cslxju/ImageRetrieval_VTDH_KBS2024``): the
backbone's tokens (a ViT's, or a CNN's spatial positions) and their external attention go through one shared hash
MLP, the two outputs are added, and a CSQ-style centre loss trains the codes.

Head: tokens T (N × D); external attention with S = 8 memory units (bias-free M_k: D → S and M_v: S → D, N(0, 0.001²)
init): A = softmax over the tokens of T·M_k, each token's row renormalised to sum 1 over the units, EA(T) = A·M_v;
the hash MLP h = Dropout(0.5) → Linear(N·D, 1024) → ReLU → Linear(1024, q); u = h(flatten T) + h(flatten EA(T)).
N·D follows from the image size: the Linear is sized by a dry forward when the network is built
(shc.models.materialize) and by the checkpoint when a run is loaded.

Loss: BCE(½(tanh u + 1), ½(c + 1)) + λ·mean | |tanh u| − 1 |³ + w_bal·mean_k | mean_i ½(tanh u_ik + 1) − ½ | with
the CSQ centers (Hadamard rows; multi-label: the sign of the summed label centers, zero bits from a fixed random
center). The published code's two defects are fixed: its cubic term lacks the outer abs (≤ 0, so it pushed |u|
towards 0) and its balance term is computed from the labels (a constant). Its Dropout on the code output is off by
default (``code_dropout=0.5`` restores it).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shc.methods.base import Method
from shc.train.dist import Dist


class ExternalAttention(nn.Module):
    def __init__(self, dim: int, units: int):
        super().__init__()
        self.keys = nn.Linear(dim, units, bias=False)     # M_k
        self.values = nn.Linear(units, dim, bias=False)   # M_v
        for layer in (self.keys, self.values):
            nn.init.normal_(layer.weight, 0.0, 1e-3)

    def forward(self, tokens):  # (B, N, D)
        attention = torch.softmax(self.keys(tokens), dim=1)                 # over the tokens
        attention = attention / (attention.sum(2, keepdim=True) + 1e-9)    # then over the units
        return self.values(attention)


class _LazyHashInput(nn.LazyLinear):
    """Linear(N·D, hidden), its input size taken at the first forward; Kaiming-uniform weight and N(0, 1) bias (the
    published code's init)."""

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_features:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            nn.init.normal_(self.bias)


class VTDHHead(nn.Module):
    """(B, D, H, W) maps (positions as tokens) or (B, N, D) tokens -> u."""

    def __init__(self, dim: int, bits: int, *, units: int, hidden: int, dropout: float, code_dropout: float):
        super().__init__()
        self.dim = dim
        self.attention = ExternalAttention(dim, units)
        self.hash = nn.Sequential(nn.Dropout(dropout), _LazyHashInput(hidden), nn.ReLU(), nn.Linear(hidden, bits),
                                  nn.Dropout(code_dropout))

    def forward(self, x):
        tokens = x.flatten(2).transpose(1, 2) if x.dim() == 4 else x
        if tokens.dim() != 3 or tokens.shape[2] != self.dim:
            raise ValueError(f"method vtdh: the head takes (B, {self.dim}, H, W) maps or (B, N, {self.dim}) "
                             f"tokens, got {tuple(x.shape)}")
        if tokens.shape[1] < 2:
            raise ValueError(f"method vtdh: the backbone's feature map has {tokens.shape[1]} position for this "
                             f"image size, external attention needs at least 2 (larger images or another backbone)")
        u = self.hash(torch.cat([tokens, self.attention(tokens)]).flatten(1))  # the shared h on both, one pass
        return u.unflatten(0, (2, -1)).sum(0)  # (no Python int of the batch size: exports stay batch-dynamic)


def vtdh_loss(u: torch.Tensor, targets: torch.Tensor, *, lambd: float, w_bal: float) -> torch.Tensor:
    """targets: B × q ±1 centers. ½(tanh u + 1) = σ(2u): the BCE on the logits 2u (stable)."""
    u = u.float()
    t = torch.tanh(u)
    bce = F.binary_cross_entropy_with_logits(2 * u, (targets + 1) / 2)
    return bce + lambd * cubic_quantization(t) + w_bal * code_balance(t)


def cubic_quantization(t: torch.Tensor) -> torch.Tensor:
    """mean | |tanh u| − 1 |³ (≥ 0; the published code's (|tanh u| − 1)³ is its negative)."""
    return (t.abs() - 1).abs().pow(3).mean()


def code_balance(t: torch.Tensor) -> torch.Tensor:
    """mean over bits of | the batch's mean of ½(tanh u + 1) − ½ |: 0 when every bit is +1 for half the batch."""
    return ((t + 1) / 2).mean(0).sub(0.5).abs().mean()


class VTDH(Method):
    name = "vtdh"
    citation = ("Xiao, Cao, Wang, Cheng, Yuan. Deep hashing image retrieval based on hybrid neural network and "
                "optimized metric learning. Knowledge-Based Systems 284, 2024 (attribution probable)")
    options = {"lambd": 1e-4, "w_bal": 0.01, "units": 8, "hidden": 1024, "dropout": 0.5, "code_dropout": 0.0}
    feature_map = True

    @classmethod
    def check_options(cls, opts):
        for key in ("units", "hidden"):
            if opts[key] < 1:
                raise ValueError(f"method vtdh: option {key} must be a positive integer, got {opts[key]!r}")
        for key in ("dropout", "code_dropout"):
            if not 0 <= opts[key] < 1:
                raise ValueError(f"method vtdh: option {key} must be in [0, 1), got {opts[key]!r}")

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        from shc.centers import csq_centers
        from shc.train.stage3 import tie_break_center

        self.centers = torch.from_numpy(np.asarray(csq_centers(ctx.num_classes, ctx.bits, seed=ctx.seed))).float()
        self.centers = self.centers.to(ctx.device)
        self.tie = tie_break_center(ctx.bits, ctx.seed).to(ctx.device)

    def head(self, num_features):
        o = self.opts
        return VTDHHead(num_features, self.ctx.bits, units=o["units"], hidden=o["hidden"], dropout=o["dropout"],
                        code_dropout=o["code_dropout"])

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        from shc.train.stage3 import multilabel_targets
        if labels.dim() == 1:
            return self.centers[labels]
        return multilabel_targets(labels, self.centers, "csq", self.tie)

    def loss(self, outputs, labels, indices):
        return vtdh_loss(outputs, self.targets(labels), lambd=self.opts["lambd"], w_bal=self.opts["w_bal"])

    def start_epoch(self, model, split, epoch, batch_size):
        """Dropout masks from (seed, epoch, rank): a resumed run draws the masks the uninterrupted run drew."""
        rank = (self.ctx.dist or Dist()).rank
        torch.manual_seed(int(np.random.SeedSequence([self.ctx.seed, epoch, rank]).generate_state(1)[0]))
