"""One training step of every registered method against SHC's: the same compact CNN on Fashion-MNIST-shaped
1×28×28 input, batch 64, 32 bits, CPU, one torch thread (SHC_BENCH_THREADS to change).

    pytest bench/test_bench_methods.py --benchmark-columns=min,mean,rounds -s
    SHC_BENCH_BACKBONE=resnet34 pytest bench/test_bench_methods.py -k step -s    # the seed's backbone

SHC_BENCH_BACKBONE=resnet34 runs the same steps on the seed's ResNet-34 (ImageNet stem, 3×112×112 input: half the
seed's 224 side, so a quarter of its backbone work and a stricter ratio for the heads, whose cost does not depend
on the image size; 5 rounds, about 3 s a step).

Each method's step is built through what the pipeline runs: shc.methods.create_method with a MethodContext
(train_size = the memory-bank size), shc.methods.hashing_model, the loop's forward, the method's loss, backward,
an RMSprop step. Memory-bank methods (those holding a shc.methods.memory.MemoryBank as ``.bank``) are measured with
a full bank of 5,000 rows (Fashion-MNIST's training set) and of 100,000 rows; the batch's labels are those its
images' rows hold. A per-epoch hook (LTH's prototypes) runs once before the timing and is not part of the step. The
centre methods train towards CSQ's centers here (the step's cost does not depend on the centers' values). SHC's
step is timed interleaved with each method's, so both see the same load; the ratio (best of each) is printed,
written into extra_info, and must stay ≤ 1.5 — but for LTH on the compact CNN (OVER_TARGET, an expected failure:
its head's own work is above that bound, bench/step_floors.py).
DPSH's likelihood is also timed alone, the engine's fused kernel against torch's chunked route.
"""
import os
import time

import numpy as np
import pytest
import torch

from shc.centers import make_centers
from shc.data.memory import InMemorySplit
from shc.methods import MethodContext, create_method, get_method, hashing_model, list_methods
from shc.models import create_backbone
from shc.train.loop import forward

BATCH, BITS, CLASSES = 64, 32, 10
BACKBONE = os.environ.get("SHC_BENCH_BACKBONE", "compact")
# (channels, side, small-input stem, rounds) of each backbone's images
INPUTS = {"compact": (1, 28, True, 15), "resnet34": (3, 112, False, 5)}
if BACKBONE not in INPUTS:
    raise ValueError(f"SHC_BENCH_BACKBONE must be one of {', '.join(INPUTS)}, got {BACKBONE!r}")
CHANNELS, SIDE, SMALL_INPUT, ROUNDS = INPUTS[BACKBONE]
BUFFERS = (5_000, 100_000)
TARGET = 1.5


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("SHC_BENCH_THREADS", "1")))
    yield
    torch.set_num_threads(threads)


def uses_bank(name: str) -> bool:
    return getattr(create_method(name, context(name, 1)), "bank", None) is not None


def context(name: str, train_size: int, device="cpu") -> MethodContext:
    cls = get_method(name)
    return MethodContext(bits=BITS, num_classes=CLASSES, multi_label=False, seed=0, train_size=train_size,
                         class_counts=np.full(CLASSES, train_size // CLASSES), device=torch.device(device),
                         centers=make_centers("csq", CLASSES, BITS, seed=0) if cls.uses_centers else None)


def method_batch(name: str, train_size: int, device="cpu"):
    """(method, model in training mode, images, labels, indices) of one step of method ``name`` on ``device``:
    the same initial network, bank, per-epoch state and batch on every device (bench/gpu_check.py compares them)."""
    method = create_method(name, context(name, train_size, device))
    torch.manual_seed(0)
    backbone = create_backbone(BACKBONE, in_channels=CHANNELS, small_input=SMALL_INPUT, feature_map=method.feature_map)
    model = hashing_model(method, backbone).to(device)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    # every training image's label; the batch's are its images' (a label does not change between epochs)
    train_labels = torch.from_numpy(rng.integers(0, CLASSES, max(train_size, BATCH))).to(device)
    bank = getattr(method, "bank", None)
    if bank is not None:  # a bank after an epoch: every row written
        with torch.no_grad():
            bank.write(torch.randn(train_size, bank.codes.shape[1], generator=gen).to(device),
                       train_labels[:train_size], torch.arange(train_size, device=device))
    split = InMemorySplit(rng.integers(0, 256, (256, SIDE, SIDE, CHANNELS), dtype=np.uint8),
                          rng.integers(0, CLASSES, 256), mean=0.286, std=0.353)
    method.start_epoch(model, split, 0, BATCH)  # a per-epoch hook: once, outside the step
    model.train()
    images = torch.randn(BATCH, CHANNELS, SIDE, SIDE, generator=gen).to(device)
    indices = torch.from_numpy(rng.choice(max(train_size, BATCH), BATCH, replace=False)).to(device)
    return method, model, images, train_labels[indices], indices


def training_step(name: str, train_size: int, device="cpu"):
    """A closure running one training step of method ``name`` as the epoch loop does."""
    method, model, images, labels, indices = method_batch(name, train_size, device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, weight_decay=1e-5)

    def step():
        loss = method.loss(forward(model, images), labels, indices)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step()  # warm-up
    return step


# A target no faithful implementation can meet on the compact CNN: the arithmetic LTH's reference head adds (a
# 2000-wide feature and a 2000 × 2000 selector, 5.3 M parameters) costs more than half SHC's whole step on its own
# (bench/step_floors.py measures it; docs/methods.md). The case still runs and prints its ratio.
OVER_TARGET = ({"lth": "LTH's reference head alone costs more than half SHC's compact-CNN step (bench/step_floors.py)"}
               if BACKBONE == "compact" else {})


def cases():
    for name in list_methods():
        if name == "shc":
            continue
        for buffer in (BUFFERS if uses_bank(name) else (BUFFERS[0],)):
            case = f"{name}-{buffer}" if uses_bank(name) else name
            marks = [pytest.mark.xfail(reason=OVER_TARGET[case], strict=False)] if case in OVER_TARGET else []
            yield pytest.param(name, buffer, id=case, marks=marks)


@pytest.mark.parametrize("name, buffer", list(cases()))
def test_bench_method_step_vs_shc(benchmark, request, name, buffer):
    shc_step, method_step = training_step("shc", buffer), training_step(name, buffer)
    shc_times = []

    def time_shc():  # pedantic's untimed setup: SHC's step interleaved with the method's, same load
        t = time.perf_counter()
        shc_step()
        shc_times.append(time.perf_counter() - t)

    benchmark.pedantic(method_step, setup=time_shc, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    method_s, shc_s = benchmark.stats.stats.min, min(shc_times)
    ratio = method_s / shc_s
    bank = buffer if uses_bank(name) else None
    benchmark.extra_info.update({"method": name, "backbone": BACKBONE, "bank_rows": bank, "batch": BATCH,
                                 "bits": BITS, "method_step_ms": round(1e3 * method_s, 2),
                                 "shc_step_ms": round(1e3 * shc_s, 2), "ratio": round(ratio, 3),
                                 "loadavg": loadavg(), "torch_threads": torch.get_num_threads()})
    line = (f"{BACKBONE} {name:10s} {'bank ' + format(bank, ',') if bank else '':13s} "
            f"step {1e3 * method_s:7.2f} ms, SHC {1e3 * shc_s:6.2f} ms, ratio {ratio:5.2f} (loadavg {loadavg()})")
    print("\n" + line)
    request.config.bench_summary_lines.append(line)
    assert ratio <= TARGET, f"{name}: one step {ratio:.2f}x SHC's (target {TARGET}x)"


def test_bench_dpsh_bank_likelihood_engine_vs_torch(benchmark, request):
    """DPSH's likelihood against a 100,000-row bank, loss and gradient: the engine's fused kernel (what the loss
    runs on the CPU) against torch's chunked route on the same bank, interleaved; target: the engine ≥ 1.5× faster."""
    from shc.methods.pairwise import bank_likelihood, bank_likelihood_torch

    method, *_ = method_batch("dpsh", BUFFERS[1])
    bank, gen = method.bank, torch.Generator().manual_seed(1)
    u = torch.randn(BATCH, BITS, generator=gen).requires_grad_()
    labels = torch.nn.functional.one_hot(torch.randint(0, CLASSES, (BATCH,), generator=gen), CLASSES).float()

    def engine():
        bank_likelihood(u, bank, labels).backward()

    torch_times = []

    def time_torch():
        t = time.perf_counter()
        bank_likelihood_torch(u, bank.codes, labels, bank.labels, True).backward()
        torch_times.append(time.perf_counter() - t)

    time_torch()
    benchmark.pedantic(engine, setup=time_torch, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    engine_s, torch_s = benchmark.stats.stats.min, min(torch_times)
    speedup = torch_s / engine_s
    benchmark.extra_info.update({"engine_ms": round(1e3 * engine_s, 2), "torch_ms": round(1e3 * torch_s, 2),
                                 "speedup": round(speedup, 2), "bank_rows": BUFFERS[1], "loadavg": loadavg(),
                                 "torch_threads": torch.get_num_threads()})
    line = (f"dpsh bank likelihood, 100,000 rows: engine {1e3 * engine_s:.2f} ms, torch {1e3 * torch_s:.2f} ms, "
            f"{speedup:.2f}x (loadavg {loadavg()})")
    print("\n" + line)
    request.config.bench_summary_lines.append(line)
    assert speedup >= 1.5, line
