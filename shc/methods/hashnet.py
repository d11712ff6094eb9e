"""HashNet (Cao, Long, Wang, Yu, "HashNet: Deep Learning to Hash by Continuation", ICCV 2017).

Head: Linear(feat, q) = u; the loss sees h = tanh(βu), codes are sign(u). Over the batch's pairs, with
ip_ij = α⟨h_i, h_j⟩ and s_ij = 1 when i and j share a label, the weighted pairwise likelihood

    L = (1/|S|) Σ_ij w_ij [softplus(ip_ij) − s_ij ip_ij],   w = |S|/|S₁| (similar), |S|/|S₀| (dissimilar)
      = mean over the similar pairs + mean over the dissimilar pairs

(a side without pairs adds nothing). Continuation: β = (1 + γ·t')^p, t' the step count t (iterations, or epochs)
rounded down to a multiple of ``beta_every``: recomputed every ``beta_every`` steps from the count, which is
method state (checkpointed). α = alpha_bits/q + alpha.

    paper (default, the authors' PyTorch release's constants): α = 10/q, β_t = (1 + 0.005·t)^0.5 every 200
        iterations, no self-pairs (the release pairs two independent batches);
    dh (DeepHash-pytorch): α = 0.1, β = sqrt(⌊epoch/20⌋ + 1), self-pairs included.
"""
import torch

from shc.methods.base import Method, code_values, similarity_matrix
from shc.methods.pairwise import pair_likelihood


class HashNet(Method):
    name = "hashnet"
    citation = "Cao, Long, Wang, Yu. HashNet: Deep Learning to Hash by Continuation. ICCV 2017"
    options = {"form": "paper", "alpha_bits": 10.0, "alpha": 0.0, "beta_unit": "iteration", "beta_every": 200,
               "beta_gamma": 0.005, "beta_power": 0.5, "self_pairs": False}
    choices = {"form": ("paper", "dh"), "beta_unit": ("iteration", "epoch")}
    presets = {"form": {"dh": {"alpha_bits": 0.0, "alpha": 0.1, "beta_unit": "epoch", "beta_every": 20,
                               "beta_gamma": 0.05, "self_pairs": True}}}

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        if self.opts["beta_every"] < 1:
            raise ValueError(f"method hashnet: option beta_every must be at least 1, got {self.opts['beta_every']}")
        self.steps = torch.zeros((), dtype=torch.int64)  # iterations trained
        self.epoch = torch.zeros((), dtype=torch.int64)  # the epoch being trained

    @property
    def alpha(self) -> float:
        return self.opts["alpha_bits"] / self.ctx.bits + self.opts["alpha"]

    def beta(self) -> float:
        """The continuation scale at the current step count (or epoch)."""
        t = int(self.steps if self.opts["beta_unit"] == "iteration" else self.epoch)
        every = self.opts["beta_every"]
        return (1 + self.opts["beta_gamma"] * every * (t // every)) ** self.opts["beta_power"]

    def start_epoch(self, model, split, epoch, batch_size):
        self.epoch.fill_(epoch)

    def loss(self, outputs, labels, indices):
        u = code_values(outputs)
        h = torch.tanh(self.beta() * u)
        ip = self.alpha * h @ h.T
        s = similarity_matrix(labels, labels, self.ctx.num_classes)
        pairs = pair_likelihood(ip, s)
        keep = torch.ones_like(s, dtype=torch.bool)
        if not self.opts["self_pairs"]:
            keep.fill_diagonal_(False)
        self.steps += 1
        loss = u.sum() * 0
        for side in (keep & (s > 0), keep & (s == 0)):
            if side.any():
                loss = loss + pairs[side].mean()
        return loss

    def state_dict(self):
        return {"steps": self.steps.clone(), "epoch": self.epoch.clone()}

    def load_state_dict(self, state):
        self.steps.copy_(state["steps"])
        self.epoch.copy_(state["epoch"])
