"""Progress of long loops (training, encoding, the image cache): tqdm's bars on a terminal, plain lines elsewhere.

Written to a log file or a pipe, a bar's every redraw would be one more line of carriage returns and escape
codes (~1,500 for a default run); there a loop prints at most one plain line per ``PLAIN_EVERY_S`` seconds, so
short loops print nothing and a long pass says how far it got. The epoch lines (``shc.train.loop.say``) are
printed either way.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

PLAIN_EVERY_S = 60.0  # seconds between two plain progress lines of one loop

T = TypeVar("T")


def show_progress(items: Iterable[T], *, total: int | None, desc: str, unit: str = "batch", enabled: bool = True,
             initial: int = 0, every_s: float = PLAIN_EVERY_S) -> Iterable[T]:
    """``items`` with progress shown on stderr: a tqdm bar when stderr is a terminal, else plain lines."""
    if not enabled:
        return items
    if sys.stderr.isatty():
        return tqdm(items, total=total, desc=desc, unit=unit, initial=initial, leave=False)
    return _plain(items, total, desc, initial, every_s)


def _plain(items: Iterable[T], total, desc: str, done: int, every_s: float) -> Iterator[T]:
    start = last = time.perf_counter()
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            print(f"{desc}: {done}{of}, {now - start:.0f} s", file=sys.stderr, flush=True)


EARLY_ESTIMATE_S = 10.0  # into a stage's first epoch, its time is estimated from the batches done so far


def duration(seconds: float) -> str:
    """A rough length of time: "~40 s", "~25 min", "~2.5 h"."""
    if seconds < 90:
        return f"~{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h".replace(".0 h", " h")


class StageClock:
    """How long a training stage has left, from the pace of what it trained so far in this call: after the first
    batches (once, in the first epoch, ``early_after_s`` in, from the batches after the first, which pays for the
    warm-up), then after every epoch (evaluations included)."""

    def __init__(self, name: str, epochs: int, start_epoch: int, steps: int, say, *,
                 early_after_s: float = EARLY_ESTIMATE_S):
        self.name, self.epochs, self.start_epoch, self.steps, self.say = name, epochs, start_epoch, steps, say
        self.early_after_s = early_after_s
        self.started = time.perf_counter()
        self.first_done = None  # when this call's first batch ended
        self.batches = 0  # in this call's first epoch; None once its estimate was said or the epoch ended

    def batch_done(self) -> None:
        if self.batches is None:
            return
        self.batches += 1
        now = time.perf_counter()
        if self.batches == 1:
            self.first_done = now
        elif now - self.started >= self.early_after_s and self.batches < self.steps:
            per_epoch = (now - self.first_done) / (self.batches - 1) * self.steps
            left = self.epochs - self.start_epoch
            self.say(f"{self.name}: {duration(per_epoch)} per epoch at the pace of its first {self.batches} batches, "
                     f"{duration(per_epoch * left)} for {left} epoch{'s' if left > 1 else ''}")
            self.batches = None

    def epoch_done(self, epoch: int) -> str:
        """", ~2 h left" after ``epoch`` (1-based) of the stage ("" after its last)."""
        self.batches = None
        left = self.epochs - epoch
        if left <= 0:
            return ""
        per_epoch = (time.perf_counter() - self.started) / (epoch - self.start_epoch)
        return f", {duration(per_epoch * left)} left"
