"""Per-epoch history for plotting elsewhere: ``history.csv`` in the run directory, rewritten after every epoch, and
TensorBoard event files (``tensorboard/``) with ``--tensorboard``.

One row per trained epoch of both stages: ``stage, epoch, loss, lr, seconds`` and, on the epochs evaluated,
``mAP@K`` / ``mAP_expected@K`` per cut-off and ``eval_seconds`` (blank elsewhere). A resumed run keeps the rows of
the epochs trained before the interruption; at the end the file is rewritten from the run's full histories, so
it matches metrics.json whatever was reused.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from shc.train.artifacts import atomic_write

CSV_FILE = "history.csv"
TENSORBOARD_DIR = "tensorboard"
FIRST_COLUMNS = ["stage", "epoch", "loss", "lr", "seconds"]


def flatten(record: dict) -> dict:
    """An epoch record as one CSV row: ``{"mAP": {100: x}}`` -> ``{"mAP@100": x}``."""
    row = {}
    for key, value in record.items():
        if isinstance(value, dict):
            row.update({f"{key}@{k}": v for k, v in value.items()})
        else:
            row[key] = value
    return row


def check_tensorboard() -> None:
    """ValueError unless the tensorboard package (which torch.utils.tensorboard writes with) is installed."""
    import importlib.util
    if importlib.util.find_spec("tensorboard") is None:
        raise ValueError('--tensorboard needs the tensorboard package: pip install tensorboard (or "shc[tensorboard]")')


class EpochLog:
    """The run's per-epoch files: ``log(stage, record)`` after each epoch (the pipeline's callback),
    ``finish(histories)`` with every stage's full history at the end."""

    def __init__(self, out, *, tensorboard: bool = False):
        self.path = Path(out) / CSV_FILE
        self.rows = _read_rows(self.path)  # an interrupted run's epochs, until its stages say otherwise
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(Path(out) / TENSORBOARD_DIR))

    def log(self, stage: str, record: dict) -> None:
        row = {"stage": stage, **flatten(record)}
        epoch = int(record["epoch"])
        # a stage that starts over drops its later rows; a resumed one keeps the epochs before it
        self.rows = [r for r in self.rows if r["stage"] != stage or int(r["epoch"]) < epoch] + [row]
        self._write()
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("stage", "epoch") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{stage}/{key}", value, epoch)
            self.writer.flush()

    def finish(self, histories: dict[str, list[dict]]) -> None:
        """Rewrite the file from the full histories (stage -> records), e.g. of stages reused from a rerun."""
        self.rows = [{"stage": stage, **flatten(record)} for stage, records in histories.items()
                     for record in records]
        self._write()
        if self.writer is not None:
            self.writer.close()

    def _write(self) -> None:
        columns = list(FIRST_COLUMNS)
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        text = io.StringIO()
        table = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        table.writeheader()
        table.writerows(self.rows)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text.getvalue()))


def _read_rows(path: Path) -> list[dict]:
    if not os.path.isfile(path):
        return []
    try:
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)
                    if row.get("stage") and str(row.get("epoch", "")).isdigit()]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
