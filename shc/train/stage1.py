"""Stage 1: train a classifier, then turn its logits on the training images into the class similarity S."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shc.similarity import accumulate_similarity, finalize_similarity
from shc.train.dist import Dist
from shc.train.loop import LoopOptions, forward, train_epochs
from shc.progress import show_progress


def classification_loss(multi_label: bool):
    """loss(logits, labels, indices): cross-entropy on class ids; BCE-with-logits on multi-hot labels."""
    if multi_label:
        return lambda logits, labels, _: F.binary_cross_entropy_with_logits(logits, labels.float())
    return lambda logits, labels, _: F.cross_entropy(logits, labels)


def train_classifier(model, dataset, opts: LoopOptions, **loop_kwargs) -> list[dict]:
    return train_epochs(model, dataset.train, classification_loss(dataset.multi_label), opts, **loop_kwargs)


@torch.no_grad()
def similarity_from_classifier(model, split, *, batch_size: int, device, dist: Dist = Dist(),
                               mask: str = "gt", multilabel: str = "negatives", progress: bool = True) -> np.ndarray:
    """One eval-mode pass over ``split``: masked-softmax accumulation, then symmetrise / normalise / diag = 1."""
    model.eval()
    dist.sync_buffers(model)  # rank 0's BatchNorm statistics on every shard
    num_classes = model.head.out_features
    s_raw = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    batches = split.batches(batch_size, train=False, device=device, rank=dist.rank, world_size=dist.world_size)
    total = split.num_batches(batch_size, rank=dist.rank, world_size=dist.world_size)
    for images, labels, _ in show_progress(batches, total=total, desc="similarity",
                                           enabled=progress and dist.is_main):
        accumulate_similarity(s_raw, forward(model, images), labels, mask=mask, multilabel=multilabel)
    if dist.active:
        torch.distributed.all_reduce(s_raw)
    return finalize_similarity(s_raw).cpu().numpy()


@torch.no_grad()
def classifier_accuracy(model, split, *, batch_size: int, device, dist: Dist = Dist()) -> float:
    """Top-1 accuracy (single-label) or mean per-label accuracy at logit 0 (multi-label) on ``split``."""
    model.eval()
    dist.sync_buffers(model)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for images, labels, _ in split.batches(batch_size, train=False, device=device, rank=dist.rank,
                                           world_size=dist.world_size):
        logits = forward(model, images)
        if labels.dim() == 1:
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
        else:
            correct += ((logits > 0) == (labels > 0)).sum()
            count += labels.numel()
    if dist.active:
        pair = torch.tensor([float(correct), float(count)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(pair)
        correct, count = pair[0], pair[1]
    return float(correct) / max(float(count), 1.0)
