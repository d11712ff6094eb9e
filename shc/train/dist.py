"""The one place that knows about ranks: who writes artifacts, how every rank gets the same objects,
how sharded evaluation outputs are put back together.

Single process: rank 0 of 1, every call is the identity. Under torch.distributed (issue 6) the same calls
broadcast / gather, so the training code never branches on rank itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> "Dist":
        """The running process group's rank/world size, or a single process."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls(torch.distributed.get_rank(), torch.distributed.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every artifact; the others only read."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def from_main(self, obj):
        """Rank 0's ``obj`` on every rank (centers, similarity, cached-artifact decisions)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, rows: np.ndarray, indices: np.ndarray, total: int) -> np.ndarray:
        """Reassemble a split-level array from each rank's (rows, indices) shard, in split order."""
        parts = [(rows, indices)]
        if self.active:
            parts = [None] * self.world_size
            torch.distributed.all_gather_object(parts, (rows, indices))
        out = np.empty((total,) + rows.shape[1:], dtype=rows.dtype)
        seen = np.zeros(total, dtype=bool)
        for part_rows, part_idx in parts:
            out[part_idx] = part_rows
            seen[part_idx] = True
        if not seen.all():
            raise RuntimeError(f"sharded encoding covered {int(seen.sum())} of {total} rows")
        return out
