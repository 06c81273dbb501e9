"""emit(): one JSON line per figure, the format every benchmark prints."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(figure: str, value: float, unit: str, **conditions: Any) -> dict[str, Any]:
    """Print and return ``{"figure", "value", "unit", "conditions"}`` as one JSON line."""
    rec = {"figure": figure, "value": value, "unit": unit, "conditions": conditions}
    print(json.dumps(rec), flush=True)
    sys.stdout.flush()
    return rec


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
