"""Input-pipeline speed: the in-memory batched pipeline against a per-sample PIL/torchvision DataLoader,
and against one training step of a small CNN, on Fashion-MNIST's training split (5,000 images).

    pytest bench/test_bench_data.py --benchmark-columns=min,mean,rounds

Baselines are measured in the same run; /proc/loadavg is recorded. Everything runs with one torch
thread: on a shared, oversubscribed machine OpenMP's spinning threads make small ops 10x slower and
the timings noise (set SHC_BENCH_THREADS to change it).
"""
import os

import numpy as np
import pytest
import torch

from shc.data import load_dataset
from shc.data.fashion_mnist import DEBIAN_ROOT, MEAN, STD
from timing import best_of

pytestmark = pytest.mark.skipif(not os.path.isdir(DEBIAN_ROOT), reason="dataset-fashion-mnist not installed")
BATCH = 256


@pytest.fixture(scope="module")
def fmnist():
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("SHC_BENCH_THREADS", "1")))
    yield load_dataset("fashion-mnist", seed=0)
    torch.set_num_threads(threads)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def in_memory_epoch(split, epoch=0):
    n = 0
    for x, y, _ in split.batches(BATCH, train=True, epoch=epoch):
        n += len(x)
    return n


def pil_loader(split):
    """What a torchvision user writes: PIL image per sample, RandomCrop + flip + ToTensor + Normalize."""
    import torchvision.transforms as T
    from PIL import Image

    transform = T.Compose([T.RandomCrop(28, padding=3), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((MEAN,), (STD,))])

    class PerSample(torch.utils.data.Dataset):
        def __len__(self):
            return len(split)

        def __getitem__(self, i):
            return transform(Image.fromarray(split.images[i, :, :, 0])), int(split.labels[i])

    return torch.utils.data.DataLoader(PerSample(), batch_size=BATCH, shuffle=True, num_workers=0)


def pil_epoch(loader):
    return sum(len(x) for x, _ in loader)


def test_bench_in_memory_vs_per_sample_pil(benchmark, fmnist):
    split = fmnist.train
    in_memory_epoch(split)  # warm-up: copies the split to the device once
    loader = pil_loader(split)
    pil_s = best_of(lambda: pil_epoch(loader))
    benchmark.pedantic(in_memory_epoch, args=(split,), rounds=5, iterations=1)
    ours_s = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "images": len(split), "batch": BATCH, "loadavg": loadavg(), "torch_threads": torch.get_num_threads(),
        "in_memory_images_per_s": round(len(split) / ours_s), "pil_images_per_s": round(len(split) / pil_s),
        "speedup": round(pil_s / ours_s, 1)})
    print(f"\nin-memory {len(split) / ours_s:,.0f} img/s, per-sample PIL {len(split) / pil_s:,.0f} img/s, "
          f"speedup {pil_s / ours_s:.1f}x (loadavg {loadavg()})")
    assert ours_s * 5 < pil_s


class SmallCNN(torch.nn.Module):
    """About the smallest network one would train on 28x28 images (a stand-in for the compact backbone)."""

    def __init__(self, bits=32):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, bits))

    def forward(self, x):
        return torch.tanh(self.features(x))


def test_bench_pipeline_not_the_bottleneck(benchmark, fmnist):
    """Producing a batch must cost a small fraction of one training step on it."""
    split = fmnist.train
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    x0, _, _ = next(split.batches(BATCH, train=True))

    def step():
        opt.zero_grad()
        model(x0).pow(2).mean().backward()
        opt.step()

    step()
    step_s = best_of(step, rounds=5)
    batches = iter(())

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = split.batches(BATCH, train=True, epoch=np.random.randint(1000))
            return next(batches)

    benchmark.pedantic(next_batch, rounds=40, iterations=1, warmup_rounds=2)
    batch_s = benchmark.stats.stats.median
    benchmark.extra_info.update({"loadavg": loadavg(), "batch_ms": round(batch_s * 1e3, 2),
                                 "train_step_ms": round(step_s * 1e3, 2),
                                 "pipeline_share": round(batch_s / (batch_s + step_s), 3)})
    print(f"\nbatch {batch_s * 1e3:.2f} ms vs small-CNN train step {step_s * 1e3:.2f} ms "
          f"({100 * batch_s / (batch_s + step_s):.1f}% of the time; loadavg {loadavg()})")
    assert batch_s < 0.25 * step_s
