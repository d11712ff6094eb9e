"""Image-file datasets: the project's default loader (decoded-image cache) against a PIL DataLoader, on a
COCO-shaped JPEG set generated here (640x480, quality 90, DeepHash multi-hot lists; not committed).

    pytest bench/test_bench_image_files.py --benchmark-only -s

Side by side in one run, every contender best of ROUNDS interleaved rounds:
  * baseline: what a torchvision user writes — a DataLoader with 2 persistent workers over PIL decoding and the
    paper's transforms (Resize(256), CenterCrop(224) or RandomCrop(224) + RandomHorizontalFlip, ToTensor,
    Normalize), batch 64;
  * shc: ``load_dataset("coco", ...)`` and ``split.batches(64, ...)`` with the defaults shc-train uses;
  * cold: building the cache (headers, decoding, writing) against one PIL pass over the same images.
Targets on a 2-core machine: warm database pass >= 5x and warm training epoch >= 3x the baseline, the cache
build no slower than one baseline pass. The machine, the load average and every rate go to extra_info.
"""
import os
import shutil
import time

import pytest
import torch

from shc.data import load_dataset
from shc.data.files import IMAGENET_MEAN, IMAGENET_STD
from shc.data.testing import make_coco_like
from shc.train.launch import default_threads

COUNTS = (300, 50, 600)  # train (drawn from the database), query, database: 650 distinct JPEGs
BATCH, ROUNDS = 64, 3


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return f"{model}, {os.cpu_count()} cores, loadavg {load}"


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(default_threads(1))  # what shc-train runs with
    root = make_coco_like(str(tmp_path_factory.mktemp("coco")), COUNTS)
    yield root, tmp_path_factory.mktemp("cache")
    torch.set_num_threads(threads)


def pil_loader(paths, train: bool):
    import torchvision.transforms as T
    from PIL import Image

    crop = [T.RandomCrop(224), T.RandomHorizontalFlip()] if train else [T.CenterCrop(224)]
    transform = T.Compose([T.Resize(256), *crop, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    class PerSample(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as img:
                return transform(img.convert("RGB"))

    return torch.utils.data.DataLoader(PerSample(), batch_size=BATCH, shuffle=train, num_workers=2,
                                       persistent_workers=True)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def drain(batches) -> int:
    n = 0
    for batch in batches:
        n += len(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return n


def best_interleaved(contenders: dict, rounds=ROUNDS) -> dict:
    """Best time of each contender over ``rounds`` rounds, the contenders alternating within a round."""
    best = {name: float("inf") for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            best[name] = min(best[name], timed(fn))
    return best


def report(config, benchmark, title, images, times, baseline, target):
    rates = {name: images / t for name, t in times.items()}
    speedup = times[baseline] / times["shc"]
    benchmark.extra_info.update({"machine": machine(), "images": images,
                                 **{f"{n}_images_per_s": round(r) for n, r in rates.items()},
                                 "speedup_vs_pil": round(speedup, 2), "target": target})
    line = (f"{title}: " + ", ".join(f"{n} {r:,.0f} img/s" for n, r in rates.items())
            + f" -> {speedup:.1f}x the PIL DataLoader (target {target}x) [{machine()}]")
    config.bench_summary_lines.append(line)
    print("\n" + line)
    return speedup


def test_bench_cache_build_vs_one_pil_pass(benchmark, coco, request):
    root, cache = coco
    plain = load_dataset("coco", root, image_cache="off")
    images = list(dict.fromkeys(plain.train.paths + plain.query.paths + plain.database.paths))
    pil = pil_loader(images, train=False)
    drain(pil)  # workers started; each round below is one pass

    def build():
        shutil.rmtree(cache / "cold", ignore_errors=True)
        load_dataset("coco", root, image_cache=str(cache / "cold"), progress=False)
    times = best_interleaved({"pil": lambda: drain(pil), "shc": build})
    benchmark.pedantic(build, rounds=1, iterations=1)
    speedup = report(request.config, benchmark, "cold: cache build vs one PIL pass", len(images), times, "pil", 1)
    assert speedup >= 1.0


@pytest.mark.parametrize("train", [False, True], ids=["database-pass", "training-epoch"])
def test_bench_warm_pass_vs_pil(benchmark, coco, request, train):
    root, cache = coco
    ds = load_dataset("coco", root, image_cache=str(cache / "warm"), progress=False)
    split = ds.train if train else ds.database
    pil = pil_loader(split.paths, train=train)
    epoch = iter(range(10 ** 6))

    def ours():
        return drain(split.batches(BATCH, train=train, epoch=next(epoch)))
    ours()
    drain(pil)
    times = best_interleaved({"pil": lambda: drain(pil), "shc": ours})
    benchmark.pedantic(ours, rounds=ROUNDS, iterations=1)
    uncached = load_dataset("coco", root, image_cache="off")
    uncached_split = uncached.train if train else uncached.database
    drain(uncached_split.batches(BATCH, train=train))  # its persistent workers started
    times["shc-cache-off"] = min(timed(lambda: drain(uncached_split.batches(BATCH, train=train)))
                                 for _ in range(2))
    target = 3 if train else 5
    title = f"warm {'training epoch' if train else 'database pass'}"
    speedup = report(request.config, benchmark, title, len(split), times, "pil", target)
    assert speedup >= target
