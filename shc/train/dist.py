"""The one place that knows about ranks: who writes artifacts, how every rank gets the same objects,
how sharded outputs are put back together or reduced (the sharded evaluation built on it: shc.train.evaluation).

Single process: rank 0 of 1, every call is the identity. Under torch.distributed (issue 6) the same calls
broadcast / gather / sum, so the training code never branches on rank itself. Starting the process group and
the workers is shc.train.launch's job.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0          # this process's index on its node (its GPU under nccl)
    local_world_size: int = 1    # processes on this node (they share its CPU cores)

    @classmethod
    def current(cls) -> "Dist":
        """The running process group's rank/world size (local ones from torchrun's env), or a single process."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            return cls(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", 0)),
                       int(os.environ.get("LOCAL_WORLD_SIZE", world)))
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
        """Rank 0's ``obj`` on every rank (centers, similarity, checkpoints, cached-artifact decisions)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The element-wise sum of every rank's ``array`` (same shape and dtype everywhere), on every rank."""
        if not self.active:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(_comm_device())
        torch.distributed.all_reduce(tensor)
        return tensor.cpu().numpy()

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along dim 0 in rank order, on every rank (memory banks write the
        rows of the whole global batch). Ranks may hold different numbers of rows (a ragged last batch)."""
        if not self.active:
            return tensor
        comm = _comm_device()
        local = tensor.detach().to(comm)
        sizes = [torch.zeros(1, dtype=torch.int64, device=comm) for _ in range(self.world_size)]
        torch.distributed.all_gather(sizes, torch.tensor([len(local)], device=comm))
        longest = int(max(sizes).item())
        padded = torch.zeros((longest,) + local.shape[1:], dtype=local.dtype, device=comm)
        padded[:len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, padded)
        return torch.cat([part[:int(n.item())] for part, n in zip(parts, sizes)]).to(tensor.device)

    def data_parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` wrapped in DistributedDataParallel (gradients averaged over ranks); itself when alone."""
        if not self.active:
            return model
        device = next(model.parameters()).device
        ids = [device] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, so that every shard is encoded by
        exactly the model rank 0 checkpoints. Parameters need nothing: DDP keeps them identical."""
        if self.active:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def gather_rows(self, rows: np.ndarray, indices: np.ndarray, total: int) -> np.ndarray:
        """Reassemble a split-level array from each rank's (rows, indices) shard, in split order, on every rank."""
        parts = [(rows, indices)]
        if self.active:
            parts = [None] * self.world_size
            torch.distributed.all_gather_object(parts, (rows, indices))
        return _assemble(parts, total, rows)

    def gather_rows_on_main(self, rows: np.ndarray, indices: np.ndarray, total: int) -> np.ndarray | None:
        """``gather_rows`` to rank 0 only (the others get None): the database codes need not be everywhere."""
        if not self.active:
            return _assemble([(rows, indices)], total, rows)
        parts = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object((rows, indices), parts, dst=0)
        return _assemble(parts, total, rows) if self.is_main else None


def _comm_device() -> torch.device:
    """nccl reduces CUDA tensors (on this rank's GPU), gloo CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _assemble(parts, total: int, like: np.ndarray) -> np.ndarray:
    out = np.empty((total,) + like.shape[1:], dtype=like.dtype)
    seen = np.zeros(total, dtype=bool)
    for part_rows, part_idx in parts:
        out[part_idx] = part_rows
        seen[part_idx] = True
    if not seen.all():
        raise RuntimeError(f"sharded encoding covered {int(seen.sum())} of {total} rows")
    return out
