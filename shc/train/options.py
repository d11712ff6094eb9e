"""Command-line style options -> TrainConfig: how shc-train and shc-compare turn flags into a run's configuration.

The flags' own spellings (``--gpu N``, ``--data-option KEY=VALUE``, ``--topk 100,1000,all``, no ``--out``) are
settled here, once, for every command that takes them.
"""
from __future__ import annotations

import ast
import dataclasses
from typing import Iterable

from shc.cli._args import list_values
from shc.train.pipeline import TrainConfig

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_options(options: dict, *, recorded: dict | None = None, given=None) -> TrainConfig:
    """A TrainConfig from shc-train's options by field name (``vars(args)``): ``gpu`` (an index, same as
    ``device="cuda:N"``), ``data_options`` / ``method_options`` (KEY=VALUE strings), ``resize``/``crop`` (the
    image-file datasets' resize_size/crop_size data options), ``topk`` (space- or comma-separated) and ``out``
    (None: the default run dir) are translated; options that are not TrainConfig fields (``nproc``, ``beta``) are
    left out; None leaves a field at its default (the dataset's preset where there is one).

    recorded: a run's recorded configuration (shc.train.recorded.recorded_config) to start from; then only the
    options named in ``given`` (those on the command line) override it, and data / method options add to its
    own."""
    if recorded is not None:
        options = {k: v for k, v in options.items() if k in (given or ())}
        recorded = _replayable(recorded, set(options))
    fields = {k: v for k, v in (recorded or {}).items() if k in _FIELDS}
    fields.update((k, v) for k, v in options.items() if k in _FIELDS and v is not None)
    if recorded is None or {"gpu", "device"} & set(options):
        fields["device"] = device_option(options.get("gpu"), options.get("device"))
    fields["data_options"] = {**(recorded or {}).get("data_options", {}),
                              **parse_data_options(options.get("data_options") or ()),
                              **image_size_options(options.get("resize"), options.get("crop"))}
    fields["method_options"] = {**(recorded or {}).get("method_options", {}),
                                **parse_data_options(options.get("method_options") or (), flag="--method-option")}
    if "topk" in fields:
        fields["topk"] = tuple(list_values(fields["topk"]))
    cfg = TrainConfig(**fields)
    out = options.get("out") or (recorded or {}).get("out")
    return dataclasses.replace(cfg, out=out or default_out_dir(cfg.dataset, cfg.method or cfg.centers or "shc",
                                                               cfg.bits))


# TrainConfig fields that a recorded (resolved) configuration also holds as method options
# (pipeline.resolve_method): given again on the command line, the field must win over the recorded copy
_METHOD_OPTION_FIELDS = {"lambd": "lambd", "multilabel_centers": "multilabel"}


def _replayable(recorded: dict, given: set) -> dict:
    """A recorded configuration that the ``given`` options can override: a new method (or centers) drops the old
    one's resolved options; a field that is also a method option drops the recorded copy of it."""
    if {"method", "centers"} & given:
        return {k: v for k, v in recorded.items() if k not in ("method", "centers", "method_options")}
    dropped = {_METHOD_OPTION_FIELDS[k] for k in given if k in _METHOD_OPTION_FIELDS}
    options = {k: v for k, v in (recorded.get("method_options") or {}).items() if k not in dropped}
    return {**recorded, "method_options": options}


def image_size_options(resize: int | None, crop: int | None) -> dict:
    """``--resize N`` / ``--crop N`` as data options; one alone sets the other in the paper's 256:224 ratio."""
    if resize is None and crop is None:
        return {}
    for flag, value in (("--resize", resize), ("--crop", crop)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive number of pixels, got {value}")
    if resize is None:
        resize = max(crop, round(crop * 256 / 224))
    if crop is None:
        crop = min(resize, round(resize * 224 / 256))
    return {"resize_size": resize, "crop_size": crop}


def device_option(gpu: int | None, device: str | None) -> str:
    """``--gpu N`` is ``--device cuda:N``; the two must agree when both are given."""
    if gpu is not None and device not in (None, f"cuda:{gpu}"):
        raise ValueError(f"--gpu {gpu} conflicts with --device {device}")
    return f"cuda:{gpu}" if gpu is not None else (device or "auto")


def parse_data_options(items: Iterable[str], flag: str = "--data-option") -> dict:
    """``KEY=VALUE`` strings -> {key: value}; values are Python literals where they parse, else strings."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key.strip()] = value  # a plain string
    return options


def default_out_dir(dataset: str, method: str, bits: int) -> str:
    return f"runs/{dataset}-{method}-{bits}"
