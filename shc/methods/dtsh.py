"""DTSH (Wang, Shi, Kitani, "Deep Supervised Hashing with Triplet Labels", ACCV 2016).

Head: Linear(feat, q) = u; codes sign(u). Triplets (anchor i, positive j, negative k) with Θ_ij = ½ u_iᵀu_j:

    L = mean over triplets softplus(−(Θ_ij − Θ_ik − α)) + λ · mean (u − sign u)²

(−log σ(Θ_ij − Θ_ik − α); each anchor's mean over its triplets, then the mean over anchors).

    official (default, the authors' code): anchors are the batch; a memory bank of every training image's latest
        u supplies the positives and negatives (the batch's own images and images not yet seen excluded), drawn
        per anchor uniformly with replacement — ``positives`` × ``negatives`` triplets each — from the method's
        own generator, seeded per step from (seed, rank, step) so that a resumed run draws what an uninterrupted one would;
        α = q/2 (margin_bits = 0.5); gradient only through the anchor.
    dh (DeepHash-pytorch): in-batch, every (positive, negative) pair of each anchor with at least one of each
        (itself a positive), on the unhalved ⟨u_i, u_j⟩, α = 5, optional clamp of the margin term to [−100, 50].

α = margin_bits·q + margin. λ = 1 in both: the losses here are means (per triplet, per code entry), the scale
on which DH's λ = 1 is set; the official η = 100 multiplies a hand-scaled gradient of sums that has no such
counterpart.
"""
import numpy as np
import torch

from shc.methods.base import Method, code_values, similarity_matrix
from shc.methods.memory import MemoryBank
from shc.methods.pairwise import draw_true, quantization_error, triplet_likelihood


class DTSH(Method):
    name = "dtsh"
    citation = "Wang, Shi, Kitani. Deep Supervised Hashing with Triplet Labels. ACCV 2016"
    options = {"form": "official", "margin_bits": 0.5, "margin": 0.0, "lambd": 1.0, "positives": 50,
               "negatives": 50, "clamp": False}
    choices = {"form": ("official", "dh")}
    presets = {"form": {"dh": {"margin_bits": 0.0, "margin": 5.0}}}

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        for key in ("positives", "negatives"):
            if self.opts[key] < 1:
                raise ValueError(f"method dtsh: option {key} must be at least 1, got {self.opts[key]}")
        self.official = self.opts["form"] == "official"
        self.bank = MemoryBank(ctx, ctx.bits, self.name) if self.official else None
        self.steps = torch.zeros((), dtype=torch.int64)
        self.generator = torch.Generator(device=ctx.device)
        self.rank = ctx.dist.rank if ctx.dist is not None else 0

    @property
    def margin(self) -> float:
        return self.opts["margin_bits"] * self.ctx.bits + self.opts["margin"]

    def loss(self, outputs, labels, indices):
        u = code_values(outputs)
        triplets = self._bank_triplets(u, labels, indices) if self.official else self._batch_triplets(u, labels)
        self.steps += 1
        return triplets + self.opts["lambd"] * quantization_error(u).mean()

    def _batch_triplets(self, u, labels):
        ip = u @ u.T
        s = similarity_matrix(labels, labels, self.ctx.num_classes) > 0
        weights = (s[:, :, None] & ~s[:, None, :]).float()
        return triplet_likelihood(ip, ip, self.margin, self.opts["clamp"], weights)

    def _bank_triplets(self, u, labels, indices):
        written = self.bank.write(u, labels, indices)
        available = self.bank.filled.to(u.dtype)
        available[written] = 0
        positive = self.bank.similar(labels, available)
        has_positive = positive.sum(1)
        anchors = (has_positive > 0) & (has_positive < available.sum())
        negative = self.bank.similar(labels, available, same=False)
        seed = np.random.SeedSequence([self.ctx.seed, self.rank, int(self.steps)]).generate_state(1)[0]
        self.generator.manual_seed(int(seed))
        j = draw_true(positive, self.opts["positives"], self.generator)[anchors]
        k = draw_true(negative, self.opts["negatives"], self.generator)[anchors]
        ua = u[anchors]
        theta_pos = 0.5 * torch.einsum("rq,rpq->rp", ua, self.bank.codes[j])
        theta_neg = 0.5 * torch.einsum("rq,rmq->rm", ua, self.bank.codes[k])
        return triplet_likelihood(theta_pos, theta_neg, self.margin, self.opts["clamp"])

    def state_dict(self):
        return {"steps": self.steps.clone(), **(self.bank.state_dict() if self.official else {})}

    def load_state_dict(self, state):
        self.steps.copy_(state["steps"])
        if self.official:
            self.bank.load_state_dict(state)
