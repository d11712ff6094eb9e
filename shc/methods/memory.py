"""A memory bank: the latest code values (N×width) and labels (N×C multi-hot) of every training image, on the
training device, for the methods that compare a batch with the whole training set (DPSH, DTSH, IDHN's DH form).

Rows start at zero and are written (detached) as their images pass through training; ``filled`` says which have
been. Under DDP every rank writes the whole global batch's rows, so every rank holds the same bank. The bank is
method state: checkpointed every epoch and restored by ``--resume``. A single-label bank also keeps each row's class
id (``classes``; derived from the labels, so rebuilt on loading, not checkpointed) for draws by class (DTSH), and
every bank the rows' labels as packed bitmaps (``bitmaps``, derived likewise) for the engine's DPSH kernel.
"""
from __future__ import annotations

import torch

from shc.methods.base import MethodContext, as_multi_hot
from shc.methods.pairwise import label_bitmaps


class MemoryBank:
    def __init__(self, ctx: MethodContext, width: int, method: str):
        # train_size 0: only the head is wanted (shc.load_run); the loss then says what it lacks
        self.method = method
        self.one_label = not ctx.multi_label
        self.num_classes = ctx.num_classes
        self.dist = ctx.dist
        self.codes = torch.zeros(ctx.train_size, width, device=ctx.device)
        self.labels = torch.zeros(ctx.train_size, ctx.num_classes, device=ctx.device)
        self.filled = torch.zeros(ctx.train_size, dtype=torch.bool, device=ctx.device)
        # the smallest integer type holding 0..C (C: no class): sorting small integers is several times faster
        dtype = next(d for d in (torch.uint8, torch.int16, torch.int32) if torch.iinfo(d).max >= ctx.num_classes)
        self.classes = torch.full((ctx.train_size,), ctx.num_classes, dtype=dtype, device=ctx.device) \
            if self.one_label else None
        self.bitmaps = label_bitmaps(self.labels)

    def write(self, codes: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Store the batch's rows (every rank's under DDP); return the indices written."""
        if not len(self.codes):
            raise ValueError(f"{self.method}: its memory bank needs the training set's size (MethodContext.train_size)")
        codes, labels = codes.detach(), as_multi_hot(labels, self.num_classes)
        indices = indices.to(self.codes.device)
        if self.dist is not None and self.dist.active:
            codes, labels, indices = (self.dist.all_gather(t) for t in (codes, labels, indices))
        self.codes[indices] = codes.to(self.codes.dtype)
        self.labels[indices] = labels.to(self.labels.dtype)
        self.filled[indices] = True
        self.bitmaps[indices] = label_bitmaps(labels)
        if self.one_label:
            self.classes[indices] = self.class_ids(labels).to(self.classes.dtype)
        return indices

    def class_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) int64 class id of each single-label row of ``labels`` (B, C, 0/1 float); C for a row without one."""
        return torch.where(labels.any(1), labels.argmax(1), self.num_classes)

    def similar(self, labels: torch.Tensor, rows: torch.Tensor | None = None, same: bool = True) -> torch.Tensor:
        """(B, N) float s_ij: 1 when batch image i shares a label with bank row j, else 0 (unwritten rows share
        none, either way); only the rows where ``rows`` (N, 0/1 float) is 1 count, the others are 0 either way. ``same=False``:
        1 − s_ij on those rows instead. Single-label: products of one-hot rows give either directly (no pass over
        the B×N result)."""
        bank_labels = self.labels if rows is None else self.labels * rows[:, None]
        batch = as_multi_hot(labels, self.num_classes)
        if self.one_label:
            return (batch if same else 1 - batch) @ bank_labels.T
        shared = (batch @ bank_labels.T > 0).to(batch.dtype)
        if same:
            return shared
        written = self.filled.to(batch.dtype)
        return (written if rows is None else written * rows) - shared

    def state_dict(self) -> dict:
        return {"bank_codes": self.codes.clone(), "bank_labels": self.labels.clone(),
                "bank_filled": self.filled.clone()}

    def load_state_dict(self, state: dict) -> None:
        for name, tensor in (("bank_codes", self.codes), ("bank_labels", self.labels), ("bank_filled", self.filled)):
            if name not in state or state[name].shape != tensor.shape:
                raise ValueError(f"checkpointed method state lacks a {tuple(tensor.shape)} {name}")
            tensor.copy_(state[name])
        if self.one_label:
            self.classes.copy_(torch.where(self.filled, self.class_ids(self.labels), self.num_classes))
        self.bitmaps.copy_(label_bitmaps(self.labels))
