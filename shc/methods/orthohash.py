"""OrthoHash (Hoe, Ng, Zhang, Chan, Song, Xiang, NeurIPS 2021): a bias-free linear layer and BatchNorm give the
continuous code v; its cosines against a fixed ±1 codebook (one row per class, drawn once per run, never learned)
are the logits of a cosine-margin cross-entropy ("orthocos"), which at once separates the classes and drives
sign(v) towards the class's codeword.

Single-label: CE(s·(cos − m·onehot(y)), y); multi-label: the margin on every positive class and the label-smoothed
target y/Σy (the official code's multiclass form). s = 8, m = 0.2 (the official defaults). Optional quantisation
term `quan`·mean q(v, sign v) with q = 1 − cos ('cs'), |·| ('l1') or (·)² ('l2'); off by default as in the paper.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shc.methods.base import Method, as_multi_hot
from shc.methods.classify import soft_cross_entropy

CODEBOOKS = ("B", "N", "O")
QUANTIZATION = ("cs", "l1", "l2")
# 'O' (greedy_rows): the distance threshold's start, step and floor, and the patience before each step
O_START, O_STEP, O_FLOOR, O_PATIENCE = 0.61, 0.01, 0.2, 10_000


def make_codebook(kind: str, classes: int, bits: int, seed: int) -> torch.Tensor:
    """C × q float ±1 codebook from ``seed`` (numpy's generator): 'B' i.i.d. Bernoulli(½) bits, 'N' signs of a
    Gaussian (sign(0) = +1), 'O' greedy rejection sampling of Bernoulli rows (O_START, O_STEP, O_FLOOR,
    O_PATIENCE)."""
    if kind not in CODEBOOKS:
        raise ValueError(f"codebook must be one of {', '.join(CODEBOOKS)}, got {kind!r}")
    rng = np.random.default_rng(seed)
    if kind == "N":
        book = np.where(rng.standard_normal((classes, bits)) >= 0, 1.0, -1.0)
    elif kind == "B":
        book = bernoulli_rows(rng, classes, bits)
    else:
        book = greedy_rows(rng, classes, bits)
    return torch.from_numpy(book).float()


def bernoulli_rows(rng: np.random.Generator, count: int, bits: int) -> np.ndarray:
    return rng.integers(0, 2, (count, bits)).astype(np.float32) * 2 - 1  # ±1 products: exact in float32


def greedy_rows(rng: np.random.Generator, classes: int, bits: int) -> np.ndarray:
    """'O': Bernoulli draws in order; a row is the first draw at normalised Hamming distance >= the threshold from
    every row so far; O_PATIENCE consecutive rejected draws lower the threshold by O_STEP, down to O_FLOOR (where
    the farthest draw of the pool is taken instead: C close to 2^q)."""
    def distance(a, b):
        return (bits - a @ b.T) / (2 * bits)

    rows = [bernoulli_rows(rng, 1, bits)[0]]
    threshold, rejected, draws, start = O_START, 0, np.empty((0, bits)), 0
    while len(rows) < classes:
        if start == len(draws):  # a new pool of draws, with each one's distance to its closest row
            draws, start = bernoulli_rows(rng, O_PATIENCE, bits), 0
            nearest = distance(draws, np.array(rows)).min(1)
        stop = min(len(draws), start + O_PATIENCE - rejected)  # where patience runs out
        accepted = np.flatnonzero(nearest[start:stop] >= threshold - 1e-9)
        if len(accepted):
            pick, rejected = start + accepted[0], 0
        else:
            rejected, start = rejected + stop - start, stop
            if rejected < O_PATIENCE:
                continue
            if threshold > O_FLOOR + 1e-9:
                threshold, rejected = max(threshold - O_STEP, O_FLOOR), 0
                continue
            pick, rejected = int(nearest.argmax()), 0
        rows.append(draws[pick])
        nearest = np.minimum(nearest, distance(draws, draws[pick][None])[:, 0])
        start = max(start, pick + 1)
    return np.array(rows)


class OrthoHashHead(nn.Module):
    """v = BatchNorm1d(Linear(feat, q, bias=False)(x)); in training also cos(v, codebook) (B, C). The codebook is a
    buffer: saved with the model, so load_run has the run's own."""

    def __init__(self, num_features: int, codebook: torch.Tensor):
        super().__init__()
        bits = codebook.shape[1]
        self.encode = nn.Linear(num_features, bits, bias=False)
        self.norm = nn.BatchNorm1d(bits)
        self.register_buffer("codebook", codebook.float())

    def forward(self, x):
        v = self.norm(self.encode(x))
        if not self.training:
            return v
        return v, F.normalize(v, dim=1) @ F.normalize(self.codebook, dim=1).T


def orthohash_loss(v: torch.Tensor, cos: torch.Tensor, labels: torch.Tensor, *, scale: float, margin: float,
                   quan: float = 0.0, quan_type: str = "cs") -> torch.Tensor:
    y = as_multi_hot(labels, cos.shape[1])
    loss = soft_cross_entropy(scale * (cos - margin * y), labels)
    if quan:
        loss = loss + quan * quantization(v.float(), quan_type)
    return loss


def quantization(v: torch.Tensor, kind: str) -> torch.Tensor:
    """mean distance of v to its sign (sign(0) = +1, no gradient through the sign)."""
    b = torch.where(v >= 0, 1.0, -1.0).to(v.dtype).detach()
    if kind == "cs":
        return (1 - F.cosine_similarity(v, b, dim=1)).mean()
    return ((v - b).abs() if kind == "l1" else (v - b).pow(2)).mean()


class OrthoHash(Method):
    name = "orthohash"
    citation = ("Hoe, Ng, Zhang, Chan, Song, Xiang. One Loss for All: Deep Hashing with a Single Cosine Similarity "
                "based Learning Objective. NeurIPS 2021")
    options = {"scale": 8.0, "margin": 0.2, "codebook": "B", "quan": 0.0, "quan_type": "cs"}
    choices = {"codebook": CODEBOOKS, "quan_type": QUANTIZATION}

    def head(self, num_features):
        codebook = make_codebook(self.opts["codebook"], self.ctx.num_classes, self.ctx.bits, self.ctx.seed)
        return OrthoHashHead(num_features, codebook)

    def loss(self, outputs, labels, indices):
        v, cos = outputs
        o = self.opts
        return orthohash_loss(v, cos, labels, scale=o["scale"], margin=o["margin"], quan=o["quan"],
                              quan_type=o["quan_type"])
