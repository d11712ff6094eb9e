"""IDHN (Zhang, Zou, Lin, Chen, Wang, "Improved Deep Hashing with Soft Pairwise Similarity for Multi-label Image
Retrieval", IEEE TMM 2020).

Head: Linear(feat, q) = u; the loss sees d = softsign(u) = u/(1 + |u|), codes are sign(u). Label similarity
w_ij = cos(y_i, y_j) (0 for an image without labels); a pair is hard when w > hard_high or w < hard_low (every
pair of single-label data), soft otherwise. With ip = d_iᵀd_j:

    official (default, the authors' TensorFlow code): in-batch pairs (self included), Θ = β·ip/q;
        hard: softplus(Θ) − wΘ;  soft: γ·q·((ip + q)/(2q) − w)²
    dh (DeepHash-pytorch): the batch against a memory bank of every training image's latest d and labels,
        Θ = β·ip (β = 0.5);  hard: softplus(Θ) − wΘ;  soft: γ·(Θ + q − 2wq)²

    L = mean over pairs + α · mean | |d| − 1 |     (β = 5, γ = 0.1, α = 0.1)
"""
import torch
import torch.nn.functional as F

from shc.methods.base import Method, as_multi_hot, code_values
from shc.methods.memory import MemoryBank
from shc.methods.pairwise import pair_likelihood


class IDHN(Method):
    name = "idhn"
    citation = ("Zhang, Zou, Lin, Chen, Wang. Improved Deep Hashing with Soft Pairwise Similarity for Multi-label "
                "Image Retrieval. IEEE TMM 2020")
    options = {"form": "official", "beta": 5.0, "gamma": 0.1, "alpha": 0.1, "hard_high": 0.99, "hard_low": 0.01}
    choices = {"form": ("official", "dh")}
    presets = {"form": {"dh": {"beta": 0.5}}}

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        self.bank = MemoryBank(ctx, ctx.bits, self.name) if self.opts["form"] == "dh" else None

    def loss(self, outputs, labels, indices):
        q, opts = self.ctx.bits, self.opts
        d = F.softsign(code_values(outputs))
        y = as_multi_hot(labels, self.ctx.num_classes)
        if self.bank is None:
            others, other_labels = d, y
        else:
            self.bank.write(d, y, indices)
            others, other_labels = self.bank.codes, self.bank.labels
        w = label_cosine(y, other_labels)
        ip = d @ others.T
        if self.bank is None:
            theta = opts["beta"] * ip / q
            soft = opts["gamma"] * q * ((ip + q) / (2 * q) - w).pow(2)
        else:
            theta = opts["beta"] * ip
            soft = opts["gamma"] * (theta + q - 2 * w * q).pow(2)
        hard = (w > opts["hard_high"]) | (w < opts["hard_low"])
        pairs = torch.where(hard, pair_likelihood(theta, w), soft)
        return pairs.mean() + opts["alpha"] * (d.abs() - 1).abs().mean()

    def state_dict(self):
        return {} if self.bank is None else self.bank.state_dict()

    def load_state_dict(self, state):
        if self.bank is None:
            super().load_state_dict(state)
        else:
            self.bank.load_state_dict(state)


def label_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_j) of multi-hot rows; 0 where either row has no label (no 0/0)."""
    norm_a, norm_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    return (a @ b.T) / (norm_a @ norm_b.T).clamp(min=torch.finfo(a.dtype).tiny)
