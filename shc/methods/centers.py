"""What the three centre methods share: hash centers from stage 2, then the center loss towards them.

L = mean BCE-with-logits(2u, (c+1)/2) + λ·mean((|tanh u| − 1)²) (shc.losses.center_loss); multi-label images
take the sign of their label centers' sum (``multilabel="csq"``) or the first label's (``"first"``).
A subclass names its stage-2 generator's settings in ``center_options`` (they become method options too).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from shc.methods.base import Method

CENTER_LOSS_OPTIONS = {"lambd": 1e-4, "multilabel": "csq"}


class CenterMethod(Method):
    uses_centers = True
    center_options: ClassVar[dict[str, Any]] = {}
    choices = {"multilabel": ("csq", "first")}

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        self._loss = None
        if ctx.centers is not None:
            from shc.train.stage3 import hashing_loss
            centers = torch.from_numpy(np.asarray(ctx.centers)).to(ctx.device)
            self._loss = hashing_loss(centers, lambd=self.opts["lambd"], multi_label=ctx.multi_label,
                                      rule=self.opts["multilabel"], seed=ctx.seed)

    @classmethod
    def center_hyper(cls, opts: dict) -> dict:
        """The stage-2 settings among the resolved options (what the centers depend on)."""
        return {k: opts[k] for k in cls.center_options}

    def make_centers(self, similarity: np.ndarray | None) -> np.ndarray:
        from shc.centers import make_centers
        return np.asarray(make_centers(self.name, self.ctx.num_classes, self.ctx.bits, similarity=similarity,
                                       seed=self.ctx.seed, **self.center_hyper(self.opts)), dtype=np.int8)

    def loss(self, outputs, labels, indices):
        if self._loss is None:
            raise ValueError(f"{self.name}: the loss needs the hash centers (MethodContext.centers)")
        return self._loss(outputs, labels)
