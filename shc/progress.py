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
