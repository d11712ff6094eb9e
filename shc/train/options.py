"""Command-line style options -> TrainConfig: how shc-train and shc-compare turn flags into a run's configuration.

The flags' own spellings (``--gpu N``, ``--data-option KEY=VALUE``, ``--topk 100,1000,all``, no ``--out``) are
settled here, once, for every command that takes them.
"""
from __future__ import annotations

import ast
import dataclasses
from typing import Iterable

from shc.train.pipeline import TrainConfig

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_options(options: dict) -> TrainConfig:
    """A TrainConfig from shc-train's options by field name (``vars(args)``): ``gpu`` (an index, same as
    ``device="cuda:N"``), ``data_options`` (KEY=VALUE strings), ``topk`` (comma-separated) and ``out`` (None:
    the default run dir) are translated; options that are not TrainConfig fields (``nproc``, ``beta``) are left
    out; None leaves a field at its default (the dataset's preset where there is one)."""
    fields = {k: v for k, v in options.items() if k in _FIELDS and v is not None}
    fields["device"] = device_option(options.get("gpu"), options.get("device"))
    fields["data_options"] = parse_data_options(options.get("data_options") or ())
    fields["method_options"] = parse_data_options(options.get("method_options") or (), flag="--method-option")
    if isinstance(fields.get("topk"), str):
        fields["topk"] = tuple(k.strip() for k in fields["topk"].split(",") if k.strip())
    cfg = TrainConfig(**fields)
    return dataclasses.replace(cfg, out=options.get("out") or default_out_dir(cfg.dataset, cfg.method or cfg.centers
                                                                              or "shc", cfg.bits))


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
