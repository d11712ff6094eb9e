"""CPU-side comparisons for the kernels' area. The Triton kernels themselves are measured on a GPU by
bench/gpu_check.py (the interpreter's timings mean nothing); on the CPU, training uses the torch reference loss,
so here: the stable reference vs the public code's BCELoss expression, one training batch, forward + backward.

    pytest bench/test_bench_kernels.py --benchmark-only
"""
import pytest
import torch
import torch.nn.functional as F

from shc.losses import center_loss_reference


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def public_bce_loss(u, centers, labels, lambd):
    t = centers[labels]
    return F.binary_cross_entropy((u.tanh() + 1) / 2, (t + 1) / 2) + lambd * (u.tanh().abs() - 1).pow(2).mean()


@pytest.mark.parametrize("B,q", [(64, 64), (1024, 64)])
@pytest.mark.parametrize("impl", ["reference", "public_bceloss"])
def test_bench_kernels_center_loss_cpu(benchmark, impl, B, q):
    torch.manual_seed(0)
    fn = center_loss_reference if impl == "reference" else public_bce_loss
    u = torch.randn(B, q, requires_grad=True)
    centers = torch.randint(0, 2, (100, q)).float() * 2 - 1
    labels = torch.randint(0, 100, (B,))

    def step():
        u.grad = None
        loss = fn(u, centers, labels, 1e-4)
        loss.backward()
        return loss

    loss = benchmark(step)
    benchmark.extra_info.update(loadavg=loadavg(), impl=impl, B=B, q=q, torch_threads=torch.get_num_threads())
    assert torch.isfinite(loss) and u.grad.abs().sum() > 0
