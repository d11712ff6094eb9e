"""What a run recorded about how it was made: the directory shc-train ran in (which relative paths in its files
are relative to) and its configuration (metrics.json's "config", which ``shc-train --config`` replays).

Runs record absolute paths and their ``working_dir``; for runs from before that, the working directory is the
one their ``--out`` was relative to, found from where the run directory is now.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# TrainConfig fields and dataset options that name files or directories (relative ones are relative to the
# working directory)
PATH_FIELDS = ("data_root", "out", "pretrained", "stage1_cache", "image_cache")
PATH_OPTIONS = ("image_root",)


def read_metrics(run_dir) -> dict:
    """The run's metrics.json ({} when it has none or it cannot be read)."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def working_dir(run_dir, recorded: str | None = None) -> str | None:
    """Where the run's shc-train ran: ``recorded`` (its files' working_dir) or, for older runs, the directory
    that metrics.json's ``config.out`` was given relative to; None when neither tells."""
    if recorded:
        return recorded
    out = read_metrics(run_dir).get("config", {}).get("out")
    if not isinstance(out, str) or os.path.isabs(out):
        return None
    run, out_parts = Path(os.path.abspath(run_dir)).parts, Path(os.path.normpath(out)).parts
    if ".." in out_parts or len(out_parts) >= len(run) or run[-len(out_parts):] != out_parts:
        return None
    return str(Path(*run[:-len(out_parts)]))


def absolute(path, base: str | None):
    """``path`` relative to ``base`` (paths that are absolute, None or "off", or no ``base``: as they are)."""
    if not isinstance(path, str) or path == "off" or base is None:
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def absolute_options(options: dict, base: str | None) -> dict:
    """Dataset options with their paths (``image_root``) relative to ``base``."""
    return {k: absolute(v, base) if k in PATH_OPTIONS else v for k, v in options.items()}


def recorded_config(source) -> dict:
    """The configuration a run recorded (``source``: the run directory or its metrics.json), its paths made
    absolute; ValueError when there is none."""
    source = Path(source)
    metrics_file = source / "metrics.json" if source.is_dir() else source
    if not metrics_file.is_file():
        why = "no metrics.json in it (a run writes it when it finishes)" if source.is_dir() else "no such file"
        raise ValueError(f"--config {source}: {why}")
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--config {metrics_file}: cannot read ({exc})") from None
    config = metrics.get("config") if isinstance(metrics, dict) else None
    if not isinstance(config, dict):
        raise ValueError(f"--config {metrics_file}: no \"config\" in it (not an shc-train metrics.json)")
    base = working_dir(metrics_file.parent, metrics.get("working_dir"))
    config = {k: absolute(v, base) if k in PATH_FIELDS else v for k, v in config.items()}
    if isinstance(config.get("data_options"), dict):
        config["data_options"] = absolute_options(config["data_options"], base)
    return config
