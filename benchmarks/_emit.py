"""emit(): one JSON line per figure, the format every benchmark prints."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def emit(figure: str, value: float, unit: str, **conditions: Any) -> dict[str, Any]:
    """Print and return ``{"figure", "value", "unit", "conditions"}`` as one JSON line."""
    rec = {"figure": figure, "value": value, "unit": unit, "conditions": conditions}
    print(json.dumps(rec), flush=True)
    sys.stdout.flush()
    return rec


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB (its own ``VmHWM``:
    :func:`party.files.peak_rss_mb`)."""
    from party.files import peak_rss_mb as own_peak

    return own_peak()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (Linux ``/proc``)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def interleaved(a: str, b: str, repeats: int) -> list[str]:
    """``repeats`` of each of two arms in the order a b b a a b …, so that a change in the
    machine's load during the runs falls on both arms alike."""
    return [m for i in range(repeats) for m in ((a, b) if i % 2 == 0 else (b, a))]
