"""Argument spellings shared by the commands."""
from __future__ import annotations

import re


def list_values(items) -> list:
    """``--topk 100 1000 all``, ``--topk 100,1000,all`` and mixes of the two -> ["100", "1000", "all"]: lists are
    accepted space- or comma-separated by every command (non-strings are kept as they are)."""
    items = [items] if isinstance(items, str) else list(items)
    return [v for item in items for v in (re.split(r"[,\s]+", item) if isinstance(item, str) else [item]) if v != ""]
