"""Where the two heaviest training steps stand against bench/test_bench_methods.py's target (≤ 1.5× SHC's step on
the compact CNN): the least arithmetic each adds to SHC's step, timed alone on the same core. LTH's floor is above
the target; DPSH's is below it, by a margin that depends on the vector width.

    python bench/step_floors.py                  # one torch thread, as the bench
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 SHC_ISA=avx2 \\
        python bench/step_floors.py              # as an AVX2-only CPU (Zen 3) would run it

LTH: its head (docs/methods.md) is Linear(576, 2000) → a 2000 × 2000 selector (+ a 2000 → C attention)
→ Linear(2000, q) → Linear(q, C): 5.3 M parameters against the compact CNN's 23 k. Per step of batch B its three
layers' matrix products (forward, input gradient, weight gradient) are 3 · 2B·(576·2000 + 2000² + 2000·q) flops,
~2 GFLOP at B = 64, and RMSprop reads and writes every parameter, gradient and square average (5 × 4 bytes per
parameter). Printed: SHC's and LTH's steps (interleaved, best of 15), those matrix products alone, torch's RMSprop
update of the head alone, the least any update can take — 20 bytes per parameter at the copy bandwidth measured
here — and the floor SHC + products + least update as a multiple of SHC's step.

DPSH at a 100,000-row bank: per step the batch meets every bank row twice in a length-q product, Θ = h·Uᵀ and the
gradient (σ(Θ) − S)·U, 2·B·N·q = 410 M multiply-adds, and needs an exp, a log1p and a reciprocal for each of the
6.4 M pairs. Printed: SHC's and DPSH's steps, the engine's likelihood kernel alone (products and the rest fused),
those products at this core's peak multiply-add rate (torch's BLAS on a 1024³ product), the step's other work
(DPSH's step without the kernel, minus SHC's), and what the target leaves the kernel.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_bench_methods import (BATCH, BITS, BUFFERS, CLASSES, TARGET, loadavg, method_batch,  # noqa: E402
                                training_step)
from timing import best_of  # noqa: E402

ROUNDS = 15


def best(fn):
    return best_of(fn, ROUNDS, warmup=True)


def interleaved_steps(name: str, bank_rows: int) -> tuple[float, float]:
    """Best of ROUNDS (SHC's step, method ``name``'s step), taken in turns so both see the same load."""
    shc_step, step = training_step("shc", bank_rows), training_step(name, bank_rows)
    shc_times, times = [], []
    for _ in range(ROUNDS):
        for fn, out in ((shc_step, shc_times), (step, times)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return min(shc_times), min(times)


def lth_head_products(features=576, width=2000, bits=BITS, batch=BATCH):
    """The matrix products of LTH's three wide layers, forward and backward, on random operands."""
    shapes = [(features, width), (width, width), (width, bits)]
    x = {k: torch.randn(batch, k) for k in (features, width)}
    weights = [torch.randn(n, m) for n, m in shapes]
    grads = [torch.randn(batch, m) for _, m in shapes]

    def run():
        for (n, m), w, g in zip(shapes, weights, grads):
            x[n] @ w             # forward
            g @ w.T              # input gradient
            x[n].T @ g           # weight gradient
    return run


def lth():
    shc_s, lth_s = interleaved_steps("lth", BUFFERS[0])
    _, model, *_ = method_batch("lth", BUFFERS[0])
    head = list(model.head.parameters())
    for p in head:
        p.grad = torch.randn_like(p)
    update_s = best(torch.optim.RMSprop(head, lr=1e-4, weight_decay=1e-5).step)
    products_s = best(lth_head_products())
    params = sum(p.numel() for p in head)

    # the least any RMSprop update can take: 5 float32 arrays of the head's size moved (read p, g, v; write p, v)
    src, dst = torch.randn(params), torch.empty(params)
    copy_s = best(lambda: dst.copy_(src))  # 2 arrays moved
    least_update_s = copy_s * 5 / 2
    floor = shc_s + products_s + least_update_s
    print(f"LTH: SHC step {1e3 * shc_s:.2f} ms, LTH step {1e3 * lth_s:.2f} ms: {lth_s / shc_s:.2f}x")
    print(f"  head: {params / 1e6:.2f} M parameters; its matrix products alone {1e3 * products_s:.2f} ms "
          f"({products_s / shc_s:.2f}x SHC's step), its RMSprop update alone {1e3 * update_s:.2f} ms "
          f"({update_s / shc_s:.2f}x), at least {1e3 * least_update_s:.2f} ms for any update (20 bytes per "
          f"parameter at this core's copy bandwidth, {2 * 4 * params / copy_s / 1e9:.1f} GB/s)")
    print(f"  floor SHC + products + least update = {1e3 * floor:.2f} ms = {floor / shc_s:.2f}x SHC's step "
          f"(target {TARGET}x)")


def dpsh():
    from shc.methods.pairwise import bank_likelihood

    rows = BUFFERS[1]
    shc_s, dpsh_s = interleaved_steps("dpsh", rows)
    method, *_ = method_batch("dpsh", rows)
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(BATCH, BITS, generator=gen).requires_grad_()
    labels = torch.nn.functional.one_hot(torch.randint(0, CLASSES, (BATCH,), generator=gen), CLASSES).float()
    kernel_s = best(lambda: bank_likelihood(u, method.bank, labels).backward())
    a, b = torch.randn(1024, 1024, generator=gen), torch.randn(1024, 1024, generator=gen)
    peak = 1024 ** 3 / best(lambda: a @ b)  # multiply-adds per second
    products_s = 2 * BATCH * rows * BITS / peak
    other_s = dpsh_s - kernel_s - shc_s
    allowed_s = (TARGET - 1) * shc_s - other_s
    print(f"DPSH, {rows:,}-row bank: SHC step {1e3 * shc_s:.2f} ms, DPSH step {1e3 * dpsh_s:.2f} ms: "
          f"{dpsh_s / shc_s:.2f}x; the engine's likelihood kernel alone {1e3 * kernel_s:.2f} ms")
    print(f"  its two products at this core's peak ({peak / 1e9:.1f} G multiply-adds/s) {1e3 * products_s:.2f} ms "
          f"= {products_s / shc_s:.2f}x SHC's step; the step's other work {1e3 * other_s:.2f} ms; the target leaves "
          f"the kernel {1e3 * allowed_s:.2f} ms, {1e3 * (allowed_s - products_s):.2f} ms beyond the products for "
          f"{BATCH * rows / 1e6:.1f} M exps, log1ps and reciprocals")


def main():
    torch.set_num_threads(1)
    from shc import _engine
    print(f"loadavg {loadavg()}; one torch thread; torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), engine path {_engine.isa()}")
    lth()
    dpsh()


if __name__ == "__main__":
    main()
