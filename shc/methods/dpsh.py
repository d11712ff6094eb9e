"""DPSH (Li, Wang, Kang, "Feature Learning based Deep Supervised Hashing with Pairwise Labels", IJCAI 2016).

Head: Linear(feat, q) = u (unbounded); codes sign(u). A memory bank holds every training image's latest u and
labels; each batch is written first (detached), then compared with the whole bank (itself included) in one matrix
product, only the batch side carrying gradient: with Θ_ij = ½ u_iᵀU_j and s_ij = 1 when i and j share a label,

    official (the authors' PyTorch port):  L = [Σ_ij softplus(Θ_ij) − s_ij Θ_ij + η Σ_i ‖u_i − sign u_i‖²] / (N·B)
    dh (DeepHash-pytorch):                 L = mean_ij [softplus(Θ_ij) − s_ij Θ_ij] + η · mean (u − sign u)²

η = 10 (the port's CIFAR-10 demo; 50 in its NUS-WIDE script) for the official form, 0.1 for DH's.
"""
from shc.methods.base import Method, as_multi_hot, code_values
from shc.methods.memory import MemoryBank
from shc.methods.pairwise import bank_likelihood, quantization_error


class DPSH(Method):
    name = "dpsh"
    citation = ("Li, Wang, Kang. Feature Learning based Deep Supervised Hashing with Pairwise Labels. IJCAI 2016")
    options = {"form": "official", "eta": 10.0}
    choices = {"form": ("official", "dh")}
    presets = {"form": {"dh": {"eta": 0.1}}}

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        self.bank = MemoryBank(ctx, ctx.bits, self.name)

    def loss(self, outputs, labels, indices):
        u = code_values(outputs)
        self.bank.write(u, labels, indices)
        pairs = len(self.bank.codes) * len(u)
        likelihood = bank_likelihood(u, self.bank, as_multi_hot(labels, self.ctx.num_classes))
        quantization = quantization_error(u)
        if self.opts["form"] == "dh":
            return likelihood / pairs + self.opts["eta"] * quantization.mean()
        return (likelihood + self.opts["eta"] * quantization.sum()) / pairs

    def state_dict(self):
        return self.bank.state_dict()

    def load_state_dict(self, state):
        self.bank.load_state_dict(state)
