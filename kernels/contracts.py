"""What the kernels accept, checked with torch alone (importing this never imports triton): shc.losses checks
its inputs here before it dispatches to a kernel, and a kernel called directly checks the same.
"""
from __future__ import annotations

import torch


def check_center_loss_inputs(u: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor | None) -> None:
    """Shape/dtype/device checks shared by every path (no device sync: class-id range is not checked here)."""
    if not isinstance(u, torch.Tensor) or not isinstance(centers, torch.Tensor):
        raise TypeError("u and centers must be torch tensors")
    if u.dim() != 2 or not u.is_floating_point():
        raise ValueError(f"u must be a floating B x q tensor, got {tuple(u.shape)} {u.dtype}")
    if u.shape[0] == 0 or u.shape[1] == 0:
        raise ValueError(f"u must be non-empty, got shape {tuple(u.shape)}")
    if centers.dim() != 2 or centers.shape[1] != u.shape[1]:
        raise ValueError(f"centers must be 2-D with q={u.shape[1]} columns, got {tuple(centers.shape)}")
    if centers.dtype == torch.bool or centers.is_complex():
        raise TypeError(f"centers must hold real ±1 values, got {centers.dtype}")
    if centers.device != u.device:
        raise ValueError(f"centers on {centers.device} but u on {u.device}")
    if labels is None:
        if centers.shape[0] != u.shape[0]:
            raise ValueError(f"without labels, centers must be the B x q target matrix {tuple(u.shape)}, "
                             f"got {tuple(centers.shape)}")
        return
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != u.shape[0]:
        raise ValueError(f"labels must be a 1-D tensor of {u.shape[0]} class ids")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
    if labels.device != u.device:
        raise ValueError(f"labels on {labels.device} but u on {u.device}")
