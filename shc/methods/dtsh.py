"""DTSH (Wang, Shi, Kitani, "Deep Supervised Hashing with Triplet Labels", ACCV 2016).

Head: Linear(feat, q) = u; codes sign(u). Triplets (anchor i, positive j, negative k) with Θ_ij = ½ u_iᵀu_j:

    L = mean over triplets softplus(−(Θ_ij − Θ_ik − α)) + λ · mean (u − sign u)²

(−log σ(Θ_ij − Θ_ik − α); each anchor's mean over its triplets, then the mean over anchors).

    official (default, the authors' code): anchors are the batch; a memory bank of every training image's latest
        u supplies the positives and negatives (the batch's own images and images not yet seen excluded), drawn
        per anchor uniformly with replacement — ``positives`` × ``negatives`` triplets each — from the method's
        own generator, seeded per step from (seed, rank, step) so that a resumed run draws what an uninterrupted one would;
        α = q/2 (margin_bits = 0.5); gradient only through the anchor. Single-label data draws from the bank's rows
        sorted by class (draw_by_class: O(N) for the sort, then O(B·(P + M))); multi-label data from every
        anchor's 0/1 weights over the bank (draw_by_labels: O(B·N)). Both draw from the same distribution.
    dh (DeepHash-pytorch): in-batch, every (positive, negative) pair of each anchor with at least one of each
        (itself a positive), on the unhalved ⟨u_i, u_j⟩, α = 5, optional clamp of the margin term to [−100, 50].

α = margin_bits·q + margin. λ = 1 in both: the losses here are means (per triplet, per code entry), the scale
on which DH's λ = 1 is set; the official η = 100 multiplies a hand-scaled gradient of sums that has no such
counterpart.
"""
import numpy as np
import torch

from shc.methods.base import Method, as_multi_hot, code_values, similarity_matrix
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
        available = self.bank.filled.clone()
        available[written] = False
        seed = np.random.SeedSequence([self.ctx.seed, self.rank, int(self.steps)]).generate_state(1)[0]
        self.generator.manual_seed(int(seed))
        draw = draw_by_class if self.bank.one_label else draw_by_labels
        anchors, j, k = draw(self.bank, as_multi_hot(labels, self.ctx.num_classes), available,
                             self.opts["positives"], self.opts["negatives"], self.generator)
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


def draw_by_class(bank: MemoryBank, labels: torch.Tensor, available: torch.Tensor, positives: int, negatives: int,
                  generator: torch.Generator):
    """A single-label bank's triplet draws: (anchors (B,) bool, positives (R, P) and negatives (R, M) bank rows of
    the R anchors), uniform with replacement among the ``available`` (N,) bool rows of the anchor's class / of the
    other classes, for the batch images with at least one of each. The available rows sorted by class (a stable
    sort of small integer keys, O(N)) make each class a contiguous run of ``order``: a positive is a uniform
    position in the anchor's run, a negative a uniform one among the positions outside it — O(B·(P + M)) after
    the sort, no B×N weights."""
    classes = bank.num_classes
    key = torch.where(available, bank.classes, classes)  # C: not available, sorted last
    order = torch.sort(key, stable=True).indices
    counts = torch.bincount(key, minlength=classes + 1)
    starts = counts.cumsum(0) - counts
    counts[classes] = 0  # an image without a class has no positives
    total = counts.sum()
    c = bank.class_ids(labels)
    same = counts[c]
    anchors = (same > 0) & (same < total)
    start, same = starts[c[anchors], None], same[anchors, None]
    j = start + uniform_below(same, positives, generator)
    k = uniform_below(total - same, negatives, generator)
    return anchors, order[j], order[torch.where(k < start, k, k + same)]


def draw_by_labels(bank: MemoryBank, labels: torch.Tensor, available: torch.Tensor, positives: int,
                   negatives: int, generator: torch.Generator):
    """draw_by_class's draws for any bank (multi-label: positives share a label with the anchor, negatives none),
    from every anchor's 0/1 weights over the whole bank: O(B·N)."""
    available = available.to(labels.dtype)
    positive = bank.similar(labels, available)
    has_positive = positive.sum(1)
    anchors = (has_positive > 0) & (has_positive < available.sum())
    negative = bank.similar(labels, available, same=False)
    j = draw_true(positive, positives, generator)[anchors]
    k = draw_true(negative, negatives, generator)[anchors]
    return anchors, j, k


def uniform_below(counts: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(R, n) integers uniform in [0, count) for each ``counts`` (R, 1) ≥ 1 (float64 draws: no visible bias at
    any bank size)."""
    r = torch.rand(len(counts), n, generator=generator, dtype=torch.float64, device=counts.device)
    return torch.minimum((r * counts).long(), counts - 1)
