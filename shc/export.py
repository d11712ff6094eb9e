"""Inference-only models of a run: uint8 images -> ±1 int8 codes, as ONNX or a torch.export program.

The exported graph takes the preprocessed pixels, uint8 (B, C, S, S) — decoded, shorter side resized and
centre-cropped as ``Encoder.pixels`` does (the identity for images of the training size) — normalises them
with the run's constants, runs the network in fp32 and returns sign(u) with sign(0) = +1. The batch size is
dynamic. Geometry stays outside the graph: resizing differs between libraries, a normalisation does not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from shc.atomic import atomic_write, check_free_space

FORMATS = ("onnx", "torch")


class CodeModel(nn.Module):
    """uint8 pixels (B, C, S, S) -> ±1 int8 codes (B, bits)."""

    def __init__(self, net: nn.Module, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from shc.inference import normalise
        from shc.train.stage3 import sign_codes
        return sign_codes(self.net(normalise(images, self.scale, self.shift)))


def code_model(encoder) -> CodeModel:
    """The encoder's network and normalisation as one CPU module in eval mode (the encoder is untouched)."""
    import copy
    net = copy.deepcopy(encoder.net).cpu().to(memory_format=torch.contiguous_format).eval()
    return CodeModel(net, *encoder.preprocessing.constants("cpu")).eval()


def export(encoder, fmt: str, out, example: torch.Tensor) -> Path:
    """Write ``encoder``'s model to ``out`` as ``fmt`` (onnx | torch); ``example``: uint8 (B, C, S, S) pixels
    that fix the image size. Returns the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    suffix = {"torch": ".pt2", "onnx": ".onnx"}[fmt]  # torch.export.save and ONNX tools go by the name
    if out.suffix != suffix:
        raise ValueError(f"--out {out}: a {fmt} export is written as {suffix} (name it {out.with_suffix(suffix).name})")
    model = code_model(encoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the serialisers abort the process (SIGABRT) or leave half a file on a full disk: check the room first
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    check_free_space(out.parent, weights + (weights >> 2) + (4 << 20), out)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    if fmt == "torch":
        program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})
        atomic_write(out, lambda tmp: torch.export.save(program, tmp))
    else:
        _require("onnx", "onnxscript")
        atomic_write(out, lambda tmp: torch.onnx.export(
            model, (example,), tmp, input_names=["images"], output_names=["codes"],
            dynamic_shapes={"images": {0: batch}}, dynamo=True, external_data=False, verbose=False))
    return out


def run_exported(path, fmt: str, pixels: torch.Tensor) -> np.ndarray:
    """The codes an exported file gives ``pixels`` on the CPU: onnxruntime for ONNX, torch for a program."""
    if fmt == "onnx":
        _require("onnxruntime")
        import onnxruntime
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["codes"], {"images": pixels.numpy()})[0]
    with torch.no_grad():
        return torch.export.load(str(path)).module()(pixels).numpy()


def _require(*modules: str) -> None:
    import importlib.util
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'shc[export]'")
