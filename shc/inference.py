"""Use a trained run: ``load_run(DIR)`` -> an :class:`Encoder` that turns images into the run's ±1 codes.

A run is self-describing: next to ``checkpoints/hashnet.pt`` the pipeline writes ``checkpoints/hashnet.json``
(:func:`save_model_config`) with the architecture, the preprocessing the model was fed, the dataset's identity
and class names, and the stage-3 fingerprint that ties it to those weights. Preprocessing reproduces the
pipeline's evaluation tensors exactly (in-memory datasets: the split's own scale/shift on the raw pixels; image
files: resize, centre crop and ImageNet normalisation through ``FileSplit``), so an image the pipeline encoded
gets bit-identical codes here.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from shc.progress import show_progress

CONFIG_FILE = Path("checkpoints") / "hashnet.json"
WEIGHTS_FILE = Path("checkpoints") / "hashnet.pt"
CONFIG_FORMAT = 1


# --------------------------------------------------------------------------------------------- the run's config
def save_model_config(out, dataset, cfg, fingerprint: str) -> None:
    """Write ``out/checkpoints/hashnet.json``: what it takes to rebuild and feed the trained hashing network."""
    from shc.data import FileSplit
    from shc.train.artifacts import write_json
    from shc.train.recorded import absolute, absolute_options

    here = os.getcwd()  # paths are stored absolute: the run is used from anywhere
    split = dataset.query
    files = isinstance(split, FileSplit)
    scale, shift = _normalisation(split)
    config = {
        "format": CONFIG_FORMAT, "fingerprint": fingerprint,
        "model": {"backbone": cfg.backbone, "bits": cfg.bits, "in_channels": dataset.channels,
                  "small_input": dataset.image_size <= 64, "method": cfg.method,
                  "method_options": cfg.method_options},
        "preprocessing": {"channels": dataset.channels,
                          "resize_size": split.resize_size if files else dataset.image_size,
                          "crop_size": split.crop_size if files else dataset.image_size,
                          "scale": scale, "shift": shift, "image_files": files},
        "dataset": {"name": dataset.name, "data_root": absolute(cfg.data_root, here), "seed": cfg.seed,
                    "options": absolute_options(cfg.data_options, here), "num_classes": dataset.num_classes,
                    "multi_label": dataset.multi_label, "class_names": dataset.class_names},
        "eval_batch_size": cfg.eval_batch_size, "working_dir": here,
    }
    write_json(Path(out) / CONFIG_FILE, config)


def _normalisation(split) -> tuple[list[float], list[float]]:
    """(scale, shift) per channel, float32 values: the split normalises with x = pixels * scale + shift."""
    from shc.data import InMemorySplit
    from shc.data.files import IMAGENET_MEAN, IMAGENET_STD
    if isinstance(split, InMemorySplit):  # its own constants (synthetic data's come from its pixels)
        return split._scale.flatten().tolist(), split._shift.flatten().tolist()
    mean, std = np.asarray(IMAGENET_MEAN, np.float64), np.asarray(IMAGENET_STD, np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32).tolist(), (-mean / std).astype(np.float32).tolist()


def read_model_config(run_dir) -> dict:
    """The run's hashnet.json; ValueError saying what is wrong with a directory that is not a usable run."""
    from shc.integrity import finish_hint
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"{run}: no such run directory")
    finish = finish_hint(run)
    if not (run / WEIGHTS_FILE).is_file():
        if any((run / name).is_file() for name in ("centers.npy", "similarity.npy", "checkpoints/classifier.pt")):
            raise ValueError(f"{run}: the run's training is unfinished (stage 3 has not started, no "
                             f"{WEIGHTS_FILE}); {finish}")
        raise ValueError(f"{run} is not an shc run directory (no {WEIGHTS_FILE}; `shc-train --out DIR` makes one)")
    try:
        config = json.loads((run / CONFIG_FILE).read_text())
    except FileNotFoundError:
        unfinished = _unfinished_checkpoint(run / WEIGHTS_FILE)
        if unfinished:  # hashnet.json is written when stage 3 ends: this training was interrupted
            raise ValueError(f"{run}: the run's training is unfinished ({WEIGHTS_FILE} {unfinished}, no "
                             f"{CONFIG_FILE} yet); {finish}") from None
        raise ValueError(f"{run}: {CONFIG_FILE} is missing (the run predates self-describing runs); rerun its "
                         f"shc-train command, which reuses every finished stage and writes it") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{run}: cannot read {CONFIG_FILE}: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ValueError(f"{run}: {CONFIG_FILE} has an unknown format (written by another shc version?)")
    # older runs recorded paths relative to where they were trained: from now on, relative to that directory
    from shc.train.recorded import absolute, absolute_options, working_dir
    config["working_dir"] = base = working_dir(run, config.get("working_dir"))
    dataset = config["dataset"]
    dataset["data_root"] = absolute(dataset.get("data_root"), base)
    dataset["options"] = absolute_options(dataset.get("options") or {}, base)
    return config


def _unfinished_checkpoint(path) -> str | None:
    """What is unfinished about a training checkpoint ("is at epoch 21 of 100", "cannot be read"); None when
    its training finished."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        epoch, epochs = state["epoch"], state["epochs"]
    except Exception:
        return "cannot be read"
    return None if epoch >= epochs else f"is at epoch {epoch} of {epochs}"


# --------------------------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: RGB decode, shorter side to ``resize_size``, centre crop
    ``crop_size`` (the identity for an image of the training size), ``channels`` kept, then
    ``pixels * scale + shift`` per channel in float32."""

    channels: int
    resize_size: int
    crop_size: int
    scale: tuple[float, ...]
    shift: tuple[float, ...]
    image_files: bool  # a dataset of image files: paths go through FileSplit, the pipeline's own loader

    @classmethod
    def from_config(cls, config: dict) -> "Preprocessing":
        p = config["preprocessing"]
        return cls(int(p["channels"]), int(p["resize_size"]), int(p["crop_size"]), tuple(p["scale"]),
                   tuple(p["shift"]), bool(p["image_files"]))

    def pixels(self, image, name: str = "image") -> torch.Tensor:
        """uint8 (channels, crop, crop) of one image: a path, a PIL image, or uint8 pixels — a numpy
        (H, W[, C]) array or a torch (C, H, W) tensor."""
        from shc.data.decode import decode_resized, resize_shorter, rgb_pixels
        from shc.data.files import centre_crop
        if isinstance(image, (str, os.PathLike)):  # the pipeline's decoder: the same pixels as its batches
            rgb = decode_resized(os.fspath(image), self.resize_size)
        else:
            rgb = resize_shorter(rgb_pixels(_as_pil(image, name)), self.resize_size)
        x = torch.from_numpy(np.ascontiguousarray(centre_crop(rgb, self.crop_size))).permute(2, 0, 1)
        if self.channels == 1:
            if not (torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])):
                raise ValueError(f"{name}: a colour image (3 channels), but this run's model takes grey images "
                                 f"(1 channel)")
            return x[:1]
        return x

    def constants(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) as (1, C, 1, 1) float32 tensors for :func:`normalise`."""
        shape = (1, self.channels, 1, 1)
        return (torch.tensor(self.scale, dtype=torch.float32, device=device).view(shape),
                torch.tensor(self.shift, dtype=torch.float32, device=device).view(shape))


def normalise(pixels: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """float32 model input from uint8 (B, C, H, W): the same values as the splits' ``x.float().mul_(scale)
    .add_(shift)`` (one rounding per operation either way)."""
    return pixels.float() * scale + shift


def _as_pil(image, name: str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"{name}: a tensor image must be (C, H, W), got shape {tuple(image.shape)}")
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected an image path, PIL image, numpy array or torch tensor, "
                        f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: pixels must be uint8 (0-255), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        channels = image.shape[2] if image.ndim == 3 else "?"
        raise ValueError(f"{name}: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) pixels, got shape "
                         f"{image.shape} ({channels} channels)")
    return Image.fromarray(np.ascontiguousarray(image))


def as_image_list(images) -> list:
    """One image or a batch -> a list of single images. Batches: a list/tuple, a numpy (N, H, W, C) or (N, H, W)
    array (the in-memory datasets' layout; a 3-D array whose last axis is 1, 3 or 4 is one image), a torch
    (N, C, H, W) tensor."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        one = images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (1, 3, 4))
        return [images] if one else list(images)
    if isinstance(images, torch.Tensor):
        return [images] if images.ndim == 3 else list(images)
    return list(images)


class _Pixels(torch.utils.data.Dataset):
    """Image k -> its uint8 model pixels (runs inside DataLoader workers for paths)."""

    def __init__(self, images: list, preprocessing: Preprocessing):
        self.images, self.preprocessing = images, preprocessing

    def __len__(self):
        return len(self.images)

    def __getitem__(self, k):
        image = self.images[k]
        name = str(image) if isinstance(image, (str, os.PathLike)) else f"image {k}"
        return self.preprocessing.pixels(image, name)


# --------------------------------------------------------------------------------------------- the encoder
class Encoder:
    """A trained hashing network with its preprocessing: ``encode(images) -> (N, bits) int8 ±1 codes``."""

    def __init__(self, net: nn.Module, preprocessing: Preprocessing, config: dict, device: torch.device,
                 run_dir=None):
        self.net, self.preprocessing, self.config, self.device = net.eval(), preprocessing, config, device
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.bits = int(config["model"]["bits"])
        self.backbone = config["model"]["backbone"]
        self.class_names = config["dataset"].get("class_names")
        self.batch_size = int(config.get("eval_batch_size", 512))

    def __repr__(self):
        p = self.preprocessing
        return (f"Encoder({self.backbone}, {self.bits} bits, {p.channels}x{p.crop_size}x{p.crop_size} input, "
                f"device={self.device}, run={self.run_dir})")

    @torch.no_grad()
    def encode(self, images, *, batch_size: int | None = None, workers: int = 0, progress: bool = False,
               desc: str = "encode") -> np.ndarray:
        """±1 int8 codes (sign(u), sign(0) = +1) of ``images``: paths, PIL images, uint8 numpy arrays or torch
        tensors, one or a batch (see :func:`as_image_list`). Streams in batches of ``batch_size`` (default:
        the run's evaluation batch); ``workers`` decode image files in parallel."""
        from shc.train.stage3 import sign_codes
        items = as_image_list(images)
        batch_size = self.batch_size if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        total = -(-len(items) // batch_size)
        rows = [sign_codes(self.forward(x)).cpu()
                for x in show_progress(self._batches(items, batch_size, workers), total=total, desc=desc,
                                       enabled=progress)]
        return torch.cat(rows).numpy() if rows else np.empty((0, self.bits), np.int8)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """u (pre-sign outputs, fp32) of normalised inputs, as the pipeline computes them on this device."""
        from shc.train.loop import forward
        return forward(self.net, inputs.to(self.device))

    def pixels(self, images) -> torch.Tensor:
        """uint8 (N, C, S, S) model pixels of ``images`` (the input of an exported model)."""
        items = as_image_list(images)
        return torch.stack([self.preprocessing.pixels(x, f"image {k}") for k, x in enumerate(items)])

    def _batches(self, items: list, batch_size: int, workers: int):
        """Normalised float batches on the device, in input order."""
        from shc.data import FileSplit, ImageReadError
        all_paths = bool(items) and all(isinstance(x, (str, os.PathLike)) for x in items)
        p = self.preprocessing
        try:
            if all_paths and p.image_files:  # the pipeline's own image-file loader (and whatever makes it fast)
                split = FileSplit([os.fspath(x) for x in items], np.zeros(len(items), np.int64),
                                  resize_size=p.resize_size, crop_size=p.crop_size)
                for images, _, _ in split.batches(batch_size, train=False, device=self.device, workers=workers):
                    yield images
                return
            scale, shift = p.constants(self.device)
            loader = torch.utils.data.DataLoader(_Pixels(items, p), batch_size=batch_size,
                                                 num_workers=workers if all_paths else 0)
            for pixels in loader:
                yield normalise(pixels.to(self.device), scale, shift)
        except (ImageReadError, ValueError, TypeError) as exc:
            # raised in a DataLoader worker, the message carries the worker's traceback: keep its last line
            last = str(exc).strip().splitlines()[-1]
            message = last.split(": ", 1)[1] if last.startswith(type(exc).__name__ + ":") else last
            raise (ImageReadError if isinstance(exc, OSError) else ValueError)(message) from None


def load_run(run_dir, *, device: str = "auto") -> Encoder:
    """The trained hashing network of ``run_dir`` (an ``shc-train --out`` directory) as an :class:`Encoder`
    on ``device`` (auto, cpu, cuda, cuda:N). The weights and their description must be the files the run's
    manifest lists (ValueError naming the file otherwise: see shc.integrity)."""
    from shc.integrity import read_manifest, verified_bytes
    from shc.train.loop import prepare_model
    from shc.train.pipeline import resolve_device

    config = read_model_config(run_dir)
    run = Path(run_dir)
    manifest = read_manifest(run)
    verified_bytes(run, CONFIG_FILE.as_posix(), manifest, model=config["fingerprint"])
    weights = verified_bytes(run, WEIGHTS_FILE.as_posix(), manifest)
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"{run / WEIGHTS_FILE}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("fingerprint") != config["fingerprint"]:
        raise ValueError(f"{run}: {WEIGHTS_FILE} does not belong to {CONFIG_FILE} (an interrupted or different "
                         f"training since); rerun the run's shc-train command")
    if state.get("epoch") != state.get("epochs"):
        raise ValueError(f"{run}: {WEIGHTS_FILE} holds an unfinished training (epoch {state.get('epoch')} of "
                         f"{state.get('epochs')}); finish it with shc-train --resume")
    net = _hashing_model(config)
    net.load_state_dict(state["model"])
    dev = resolve_device(device)
    return Encoder(prepare_model(net, dev), Preprocessing.from_config(config), config, dev, run)


def _hashing_model(config: dict) -> nn.Module:
    """The run's network, untrained: its backbone and its method's head (runs before the method registry: the
    centre methods' Linear head)."""
    from shc.methods import MethodContext, create_method, hashing_model
    from shc.models import create_backbone

    model, data = config["model"], config["dataset"]
    ctx = MethodContext(bits=model["bits"], num_classes=data["num_classes"], multi_label=data["multi_label"],
                        seed=data["seed"])
    method = create_method(model.get("method", "shc"), ctx, model.get("method_options", {}))
    with warnings.catch_warnings():  # "no ImageNet weights": irrelevant, the trained weights follow
        warnings.simplefilter("ignore")
        backbone = create_backbone(model["backbone"], in_channels=model["in_channels"],
                                   small_input=model["small_input"], feature_map=method.feature_map)
    return hashing_model(method, backbone)
