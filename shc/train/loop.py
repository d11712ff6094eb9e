"""The epoch loop shared by stage 1 (classifier) and stage 3 (hashing network).

RMSprop + cosine decay (the paper's optimiser for both stages), bf16 autocast and channels_last on CUDA,
one checkpoint per epoch holding everything needed to continue (model, optimiser, schedule, history).
Shuffling and augmentation are seeded by (seed, epoch) inside Split.batches, so a resumed run sees exactly
the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from shc.train.artifacts import load_checkpoint, save_checkpoint
from shc.train.dist import Dist
from shc.progress import StageClock, show_progress


@dataclass
class LoopOptions:
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 1e-5
    final_lr: float = 1e-7
    seed: int = 0
    workers: int | None = None  # None: the split's own setting
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    compile: str = "off"  # one of COMPILE_MODES


# torch.compile modes for the training step; "reduce-overhead" adds CUDA graphs (small batches are launch-bound)
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def say(message: str) -> None:
    """One line to stdout that does not break progress bars and is seen at once in a log file."""
    tqdm.write(message)
    sys.stdout.flush()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def check_compile_mode(mode: str) -> None:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")


def compile_model(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """The module to train through: ``model`` itself ("off") or torch.compile of it (same parameters)."""
    check_compile_mode(mode)
    if mode == "off":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode)


def forward(model: torch.nn.Module, images: torch.Tensor):
    """Model outputs in fp32 (a tensor, or a tuple of them from a head with extras); bf16 autocast +
    channels_last on CUDA."""
    if images.is_cuda:
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = model(images)
        return tuple(o.float() for o in outputs) if isinstance(outputs, (tuple, list)) else outputs.float()
    return model(images)


def checkpoint_state(path, fp: str) -> tuple[dict | None, bool, str | None]:
    """(state, complete, other) of the checkpoint at ``path``: its state and whether its training finished if it
    belongs to fingerprint ``fp``; else (None, False, other), other saying how far a readable checkpoint written
    for other inputs got ("epoch 21 of 100"; None when there is none), so --resume can say why it cannot."""
    state = load_checkpoint(path, None)
    if state is None or state["fingerprint"] != fp:
        return None, False, None if state is None else f"epoch {state['epoch']} of {state['epochs']}"
    return state, state["epoch"] >= state["epochs"], None


def train_epochs(model: torch.nn.Module, split, loss_fn: Callable, opts: LoopOptions, *, name: str,
                 checkpoint_path, fp: str, resume_state: dict | None = None, dist: Dist = Dist(),
                 evaluate: Callable[[int], dict] | None = None, callback: Callable | None = None,
                 method=None) -> list[dict]:
    """Train for ``opts.epochs`` epochs (continuing from ``resume_state`` if given); return the history.

    Distributed: ``opts.batch_size`` is the global batch; every rank trains on its batch_size / world_size
    share of each global batch (DistributedSampler order: the ranks' shares make up exactly the batch one
    process would take) through DistributedDataParallel, which averages the gradients, so the learning rate
    and the schedule are those of one process. Rank 0 writes the checkpoints; the loss is the global mean.
    loss_fn(outputs, labels, indices) -> scalar (indices: the batch's positions in ``split``). ``method``
    (shc.methods): its start_epoch runs before every epoch and its state_dict (memory banks, counters) goes
    into every checkpoint and comes back on resume. evaluate(epoch) -> dict merged into that epoch's record (it
    decides itself which epochs to evaluate). callback(name, record) runs after each epoch's checkpoint.
    """
    optimizer = torch.optim.RMSprop(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=opts.epochs, eta_min=opts.final_lr)
    history, start = [], 0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        history, start = list(resume_state["history"]), int(resume_state["epoch"])
        if method is not None:
            method.load_state_dict(resume_state.get("method_state") or {})
    if opts.batch_size % dist.world_size:
        raise ValueError(f"batch size {opts.batch_size} must be divisible by the {dist.world_size} processes")
    local_batch = opts.batch_size // dist.world_size
    # BatchNorm cannot train on a batch of one: drop the ragged tail when the split allows it
    drop_last = len(split) >= opts.batch_size
    steps = split.num_batches(local_batch, train=True, rank=dist.rank, world_size=dist.world_size,
                              drop_last=drop_last)
    net = compile_model(dist.data_parallel(model), opts.compile)  # after the resume load: DDP starts from rank 0
    show = opts.progress and dist.is_main
    clock = StageClock(name, opts.epochs, start, steps, say if show else (lambda *_: None))
    for epoch in show_progress(range(start, opts.epochs), total=opts.epochs, desc=name, unit="epoch",
                               enabled=show, initial=start):
        t0 = time.perf_counter()
        if method is not None:
            method.start_epoch(model, split, epoch, local_batch)
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), dtype=torch.float64, device=opts.device)
        seen = 0
        batches = split.batches(local_batch, train=True, device=opts.device, seed=opts.seed, epoch=epoch,
                                rank=dist.rank, world_size=dist.world_size, workers=opts.workers,
                                drop_last=drop_last)
        for images, labels, indices in show_progress(batches, total=steps,
                                                     desc=f"{name} epoch {epoch + 1}/{opts.epochs}", enabled=show):
            loss = loss_fn(forward(net, images), labels, indices)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(labels)  # no host sync per step
            seen += len(labels)
            clock.batch_done()
        scheduler.step()
        loss_total, seen_total = dist.sum(np.array([float(loss_sum), seen], dtype=np.float64)).tolist()
        record = {"epoch": epoch + 1, "loss": loss_total / max(seen_total, 1.0), "lr": lr,
                  "seconds": time.perf_counter() - t0}
        if evaluate is not None:
            t_eval = time.perf_counter()
            evaluated = evaluate(epoch + 1)
            if evaluated:
                record.update(evaluated, eval_seconds=time.perf_counter() - t_eval)
        history.append(record)
        if dist.is_main:
            save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                              "scheduler": scheduler.state_dict(), "history": history,
                                              "epoch": epoch + 1, "epochs": opts.epochs,
                                              **({"method_state": method.state_dict()} if method else {})}, fp)
            summary = " ".join(f"{k} {_fmt(v)}" for k, v in record.items() if k != "epoch")
            say(f"{name} epoch {epoch + 1}/{opts.epochs}: {summary}{clock.epoch_done(epoch + 1)}")
        if callback is not None:
            callback(name, record)
    return history


def _fmt(v):
    if isinstance(v, dict):  # mAP by cut-off
        return " ".join(f"@{k} {x:.4f}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
