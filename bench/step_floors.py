"""Why LTH's training step cannot come within 1.5× of SHC's on the compact CNN (bench/test_bench_methods.py's
target): the arithmetic its reference head adds, timed alone on the same core, already exceeds half of SHC's whole
step.

    python bench/lth_floor.py            # one torch thread, as the bench

LTH's head (docs/methods.md): Linear(576, 2000) → a 2000 × 2000 selector (+ a 2000 → C attention) → Linear(2000, q)
→ Linear(q, C): 5.3 M parameters against the compact CNN's 23 k. Per step of batch B its three layers' matrix
products (forward, input gradient, weight gradient) are 3 · 2B·(576·2000 + 2000² + 2000·q) flops, ~2 GFLOP at
B = 64, and RMSprop reads and writes every parameter, gradient and square average (5 × 4 bytes per parameter).
Printed: SHC's and LTH's steps (interleaved, best of 15), those matrix products alone, torch's RMSprop update of
the head alone, and the least any update can take — its 20 bytes per parameter at the copy bandwidth measured
here — and the floor SHC + products + least update as a multiple of SHC's step.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_bench_methods import BATCH, BITS, loadavg, method_batch, training_step  # noqa: E402

ROUNDS = 15


def best(fn, rounds=ROUNDS):
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def head_products(features=576, width=2000, bits=BITS, batch=BATCH):
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


def main():
    torch.set_num_threads(1)
    shc_step, lth_step = training_step("shc", 5_000), training_step("lth", 5_000)
    shc_times, lth_times = [], []
    for _ in range(ROUNDS):
        for fn, out in ((shc_step, shc_times), (lth_step, lth_times)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    shc_s, lth_s = min(shc_times), min(lth_times)

    _, model, *_ = method_batch("lth", 5_000)
    head = [p for p in model.head.parameters()]
    for p in head:
        p.grad = torch.randn_like(p)
    update = torch.optim.RMSprop(head, lr=1e-4, weight_decay=1e-5)
    update_s = best(update.step)
    products_s = best(head_products())
    params = sum(p.numel() for p in head)

    # the least any RMSprop update can take: 5 float32 arrays of the head's size moved (read p, g, v; write p, v)
    src, dst = torch.randn(params), torch.empty(params)
    copy_s = best(lambda: dst.copy_(src))  # 2 arrays moved
    least_update_s = copy_s * 5 / 2
    floor = shc_s + products_s + least_update_s
    print(f"loadavg {loadavg()}; one torch thread; {torch.__version__}")
    print(f"SHC step {1e3 * shc_s:.2f} ms, LTH step {1e3 * lth_s:.2f} ms: {lth_s / shc_s:.2f}x")
    print(f"LTH head: {params / 1e6:.2f} M parameters; its matrix products alone {1e3 * products_s:.2f} ms "
          f"({products_s / shc_s:.2f}x SHC's step), its RMSprop update alone {1e3 * update_s:.2f} ms "
          f"({update_s / shc_s:.2f}x), at least {1e3 * least_update_s:.2f} ms for any update (20 bytes per "
          f"parameter at this core's copy bandwidth, {2 * 4 * params / copy_s / 1e9:.1f} GB/s)")
    print(f"floor SHC + products + least update = {1e3 * floor:.2f} ms = {floor / shc_s:.2f}x SHC's step "
          f"(target 1.5x)")


if __name__ == "__main__":
    main()
