"""LTH, Long-Tail Hashing (Chen, Hou, Leng, Zhang, Lin, Zhang, SIGIR 2021): a direct feature f, enriched by a
dynamic meta-embedding — a memory of class prototypes read by attention and gated by a selector — gives the codes
tanh(u); a classifier on them is trained with (class-balanced) cross-entropy.

f = ReLU(Linear(feat, F)(ReLU(x))), F = 2000; a = softmax(W_h f) over the C prototypes; m = a·Proto;
g = tanh(W_s f); f' = f + g ⊙ m; u = Linear(F, q)(f'), codes sign(u); logits = Linear(q, C)(tanh u).
Proto[c] is the mean direct feature of class c over the training split, recomputed before every epoch (the
official code's class means; the paper's DPP extension is not in its code). Loss: mean over the batch of
−Σ_c w_c·y_c·log softmax(logits)_c, w_c = (1 − β)/(1 − β^{n_c}) normalised to max 1 (β = 0: plain cross-entropy).
Multi-label: a multi-hot image counts towards every positive class's prototype, and y is label-normalised (y/Σy).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shc.methods.base import Method, as_multi_hot
from shc.methods.classify import soft_cross_entropy
from shc.train.dist import Dist


class LTHHead(nn.Module):
    def __init__(self, num_features: int, bits: int, num_classes: int, feature_dim: int, meta_embedding: bool):
        super().__init__()
        self.direct = nn.Sequential(nn.ReLU(), nn.Linear(num_features, feature_dim), nn.ReLU())
        self.meta_embedding = meta_embedding
        if meta_embedding:
            self.hallucinator = nn.Linear(feature_dim, num_classes)   # W_h: attention over the prototypes
            self.selector = nn.Linear(feature_dim, feature_dim)       # W_s
            self.register_buffer("prototypes", torch.zeros(num_classes, feature_dim))
        self.encode = nn.Linear(feature_dim, bits)
        self.classify = nn.Linear(bits, num_classes)

    def forward(self, x):
        f = self.direct(x)
        if self.meta_embedding:
            memory = torch.softmax(self.hallucinator(f), dim=1) @ self.prototypes.to(f.dtype)
            f = f + torch.tanh(self.selector(f)) * memory
        u = self.encode(f)
        return (u, self.classify(torch.tanh(u))) if self.training else u


def class_balanced_weights(counts, beta: float) -> torch.Tensor:
    """w_c = (1 − β)/(1 − β^{n_c}) / max (C,), float64; β = 0 gives ones. A class without training images is
    weighted as if it had one (it is never a target; 1 − β^0 would divide by zero)."""
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64).clamp(min=1)
    w = (1 - beta) / (1 - beta ** n)
    return w / w.max()


@torch.no_grad()
def class_sums(features, labels, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums (C, F), counts (C,)) float64 of ``features`` (B, F) over the classes of ``labels`` (ids or
    multi-hot: an image counts for every positive class)."""
    y = as_multi_hot(labels, num_classes).double()
    return y.T @ features.double(), y.sum(0)


class LTH(Method):
    name = "lth"
    citation = ("Chen, Hou, Leng, Zhang, Lin, Zhang. Long-Tail Hashing. SIGIR 2021")
    # lr_scale 0.1: the official code's RMSprop lr is 1e-5, a tenth of SHC's 1e-4 (at the run's own rate the
    # 2000-wide head saturates tanh in the first epoch and every image gets one code)
    options = {"beta": 0.0, "feature_dim": 2000, "meta_embedding": True, "lr_scale": 0.1}

    @classmethod
    def check_options(cls, opts):
        if not 0 <= opts["beta"] < 1:
            raise ValueError(f"method lth: option beta must be in [0, 1), got {opts['beta']!r}")
        if not opts["lr_scale"] > 0:
            raise ValueError(f"method lth: option lr_scale must be > 0, got {opts['lr_scale']!r}")
        if opts["feature_dim"] < 1:
            raise ValueError(f"method lth: option feature_dim must be a positive integer, got {opts['feature_dim']!r}")

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        beta = self.opts["beta"]
        counts = ctx.class_counts if ctx.class_counts is not None else np.ones(ctx.num_classes)
        self.weights = None if beta == 0 else class_balanced_weights(counts, beta).float().to(ctx.device)

    def head(self, num_features):
        o = self.opts
        return LTHHead(num_features, self.ctx.bits, self.ctx.num_classes, o["feature_dim"], o["meta_embedding"])

    def loss(self, outputs, labels, indices):
        u, logits = outputs
        return soft_cross_entropy(logits, labels, self.weights)

    def start_epoch(self, model, split, epoch, batch_size):
        """Proto ← the class means of the direct feature over the training split: a no-grad pass in eval mode
        (each rank its shard, the sums added up), written into the head's buffer, so checkpoints hold them and a
        resumed run recomputes the same ones. A class without images keeps a zero prototype."""
        head = model.head
        if not head.meta_embedding:
            return
        dist = self.ctx.dist or Dist()
        model.eval()
        c = self.ctx.num_classes
        sums = torch.zeros(c, head.prototypes.shape[1], dtype=torch.float64, device=self.ctx.device)
        counts = torch.zeros(c, dtype=torch.float64, device=self.ctx.device)
        with torch.no_grad():
            for images, labels, _ in split.batches(batch_size, train=False, device=self.ctx.device,
                                                   rank=dist.rank, world_size=dist.world_size):
                s, n = class_sums(head.direct(model.backbone(images)), labels, c)
                sums += s
                counts += n
        total = dist.sum(torch.cat([sums, counts[:, None]], 1).cpu().numpy())
        sums, counts = torch.from_numpy(total[:, :-1]), torch.from_numpy(total[:, -1:])
        head.prototypes.copy_((sums / counts.clamp(min=1)).to(head.prototypes))
