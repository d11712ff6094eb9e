"""What a training method is: its options, its head, its loss and any state it carries between steps.

A method is a subclass of :class:`Method` in a module of its own, named in ``shc.methods.REGISTRY``. The
pipeline asks it which stages it needs (``uses_similarity``: stage 1, ``uses_centers``: stage 2), builds the
network as backbone + ``method.head(num_features)``, and trains with ``method.loss(outputs, labels, indices)``
in the shared epoch loop (one optimiser, schedule, checkpointing, DDP, evaluation for every method).
``method.state_dict()`` (memory banks, step counters) is saved in every per-epoch checkpoint and restored on
``--resume``.

Heads return the code values u (codes are sign(u), sign(0) = +1) in eval mode; a head may return a tuple
``(u, extra...)`` in training mode when its loss needs more (e.g. a classifier's logits).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


@dataclass
class MethodContext:
    """What a method may depend on besides its options: the code length, the data's shape, the training
    device and the process group (memory banks see every rank's rows)."""

    bits: int
    num_classes: int
    multi_label: bool
    seed: int = 0
    train_size: int = 0                       # N: rows of a memory bank (0 when only the head is needed)
    class_counts: np.ndarray | None = None    # training images per class (C,)
    centers: np.ndarray | None = None         # C×q ±1 hash centers (stage 2) for the centre methods
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist: Any = None                          # shc.train.dist.Dist, or None for one process


class Method:
    """Base class. Subclasses set ``name``, ``options`` (every hyper-parameter with its default; the default's
    type is the type accepted) and implement ``loss``; they override ``head`` when theirs is not a Linear."""

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple]] = {}      # options with a fixed set of values
    # option -> its value -> other options' defaults under that value (e.g. form=dh: the DH reimplementation's
    # constants), so one option selects a reference's whole configuration and any of it can still be overridden
    presets: ClassVar[dict[str, dict[Any, dict[str, Any]]]] = {}
    uses_similarity: ClassVar[bool] = False       # stage 1 (the classifier -> class similarity S)
    uses_centers: ClassVar[bool] = False          # stage 2 (hash centers)
    feature_map: ClassVar[bool] = False           # the head takes the backbone's spatial map (B, C, H, W)
    backbones: ClassVar[tuple[str, ...] | None] = None  # the backbones it can use (None: all)

    def __init__(self, ctx: MethodContext, options: dict | None = None):
        self.ctx = ctx
        self.opts = resolve_options(type(self), options or {})

    @property
    def lr_scale(self) -> float:
        """The method's learning rate relative to the run's (--lr): its ``lr_scale`` option where it has one."""
        return float(self.opts.get("lr_scale", 1.0))

    # ---------------------------------------------------------------- what subclasses provide
    @classmethod
    def check_options(cls, opts: dict) -> None:
        """ValueError for option values out of their range (types are checked already); runs whenever options are
        resolved, so a run refuses them before any work."""

    def head(self, num_features: int) -> nn.Module:
        """Features -> u. Default: Linear(feat, bits) at N(0, 0.01²) weights and zero bias (the paper's init)."""
        return linear_head(num_features, self.ctx.bits)

    def loss(self, outputs, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch: ``outputs`` of the model in training mode, labels (class ids (B,)
        or multi-hot (B, C)), and the batch's positions in the training split (memory banks)."""
        raise NotImplementedError

    def start_epoch(self, model: nn.Module, split, epoch: int, batch_size: int) -> None:
        """Called before each training epoch (also the first one a resumed run trains)."""

    def state_dict(self) -> dict:
        """Tensors the method carries between batches or epochs (checkpointed every epoch)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} carries no state, got {sorted(state)}")


def linear_head(num_features: int, bits: int, bias: bool = True) -> nn.Linear:
    head = nn.Linear(num_features, bits, bias=bias)
    nn.init.normal_(head.weight, 0.0, 0.01)
    if bias:
        nn.init.zeros_(head.bias)
    return head


def code_values(outputs) -> torch.Tensor:
    """u from a model's outputs (the first element when a head returns extras in training mode)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def similarity_matrix(labels_a: torch.Tensor, labels_b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """s_ij = 1 when the two samples share a label, else 0 (float): class ids or multi-hot rows."""
    return (as_multi_hot(labels_a, num_classes) @ as_multi_hot(labels_b, num_classes).T > 0).float()


def as_multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C) float labels: class ids one-hot, multi-hot rows as they are."""
    if labels.dim() == 1:
        return torch.nn.functional.one_hot(labels.long(), num_classes).float()
    return (labels > 0).float()


def resolve_options(method: type[Method], given: dict) -> dict:
    """The method's options: its defaults (those of the presets ``given`` selects over them) with ``given`` over
    them, each value checked against the default's type (ints accepted for floats). ValueError naming the options
    it takes for an unknown one."""
    if not isinstance(given, dict):
        raise ValueError(f"method options must be a dict of name -> value, got {type(given).__name__}")
    unknown = sorted(set(given) - set(method.options))
    if unknown:
        takes = ", ".join(sorted(method.options)) or "none"
        raise ValueError(f"method {method.name} takes no option {', '.join(map(repr, unknown))}; it takes: {takes}")
    resolved = dict(method.options)
    for key, by_value in method.presets.items():
        if key in given:
            resolved.update(by_value.get(_checked(method, key, given[key]), {}))
    for key, value in given.items():
        resolved[key] = _checked(method, key, value)
    method.check_options(resolved)
    return resolved


def _checked(method: type[Method], key: str, value):
    default = method.options[key]
    wanted = type(default)
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if wanted is bool or isinstance(value, bool):
        ok = isinstance(value, bool) and wanted is bool
    else:
        ok = isinstance(value, wanted)
    if wanted is float and ok and not np.isfinite(value):
        ok = False
    if not ok:
        raise ValueError(f"method {method.name}: option {key} takes {_type_name(wanted)} "
                         f"(default {default!r}), got {value!r}")
    allowed = method.choices.get(key)
    if allowed is not None and value not in allowed:
        raise ValueError(f"method {method.name}: option {key} must be one of {', '.join(map(str, allowed))}, "
                         f"got {value!r}")
    return value


def _type_name(t: type) -> str:
    return {bool: "True or False", int: "an integer", float: "a finite number", str: "a string"}.get(t, t.__name__)
