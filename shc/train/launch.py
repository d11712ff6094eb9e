"""Starting distributed runs: N worker processes through torch's elastic launcher (``shc-train --nproc N``,
the same machinery as ``torchrun``), and in every worker the process group the launcher describes in the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...): nccl on CUDA, gloo on CPU, with a timeout so
that a lost or stuck worker ends the run with an error instead of a hang.
"""
from __future__ import annotations

import os
import sys
import uuid
from contextlib import contextmanager
from datetime import timedelta

import torch

from shc.train.dist import Dist

DEFAULT_TIMEOUT_S = 600.0


def launched_world_size() -> int:
    """WORLD_SIZE as set by torchrun / the elastic agent; 1 outside a launcher."""
    return int(os.environ.get("WORLD_SIZE", 1))


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(local_world_size: int = 1) -> int:
    """torch CPU threads per process: the node's cores minus one (left for the OS, the launcher and data
    work), split among the processes on the node, at least one each. Oversubscribed OpenMP threads on a
    busy machine cost far more than an idle core (an epoch measured 49 s with 2 threads vs 4 s with 1)."""
    return max(1, (available_cores() - 1) // max(1, local_world_size))


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device of one worker of a multi-process run: GPU ``local_rank`` on CUDA, the CPU otherwise."""
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ValueError(f"--device {device} / --gpu pick one GPU, but every process of a distributed run "
                         "uses its own (cuda:LOCAL_RANK); choose the GPUs with CUDA_VISIBLE_DEVICES")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible "
                         "(start at most that many processes per node)")
    return torch.device("cuda", local_rank)


@contextmanager
def process_group(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S):
    """Yield ``(Dist, device)`` for this process.

    Under a launcher (WORLD_SIZE > 1) this joins the process group it describes — nccl for CUDA, gloo for
    the CPU, collectives timing out after ``timeout_s`` — and leaves it afterwards; a group the caller
    initialised already is used as it is. A single process gets ``Dist()`` and ``device`` unchanged.
    """
    created = False
    if launched_world_size() > 1 and not torch.distributed.is_initialized():
        device = rank_device(device, int(os.environ.get("LOCAL_RANK", 0)))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                             timeout=timedelta(seconds=timeout_s))
        created = True
    dist = Dist.current()
    if dist.active and not created:
        device = rank_device(device, dist.local_rank)
    yield dist, device
    # not in a finally: after a failed collective, leaving the group can block on the lost peers
    if created:
        # every rank done before any leaves: a rank tearing gloo down while a peer still writes its outputs
        # was seen to abort ("terminate called without an active exception") under load
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def launch(argv: list[str], nproc: int, *, module: str = "shc.cli.train") -> int:
    """Run ``python -m module *argv`` as ``nproc`` workers on this node (torchrun --standalone's setup:
    c10d rendezvous on a free local port, no restarts). Returns the exit status: 0, or the first failed
    worker's (after the agent has stopped the others)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", module, *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        print(f"shc-train: error: worker rank {rank} of {nproc} {how} (its messages are above); "
              "the other workers were stopped", file=sys.stderr)
        return code if code > 0 else 1
    except SignalException as exc:  # Ctrl-C / SIGTERM to the launcher: the agent has stopped the workers
        print(f"shc-train: interrupted ({exc.sigval.name}); rerun the same command with --resume to continue",
              file=sys.stderr)
        return 130
    return 0
