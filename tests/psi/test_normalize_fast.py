"""psi.normalize's Arrow fast path gives exactly what the per-value path gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import psi.normalize as nm
from psi.normalize import IdError, NormalizeOptions, normalize_ids

CASES = {
    "plain": ["c1", "c2", "c3"],
    "spelling": ["  Ab1\t", "ab2", "AB3\r\n", "\vx\f", "007", "+01", "1.50", "-2", "3.", "abc"],
    "duplicates": ["a", "A ", "b", "a", "c", "B"],
}


def _both(values: list[str], opts: NormalizeOptions, **kw: object) -> tuple[object, object]:
    col = pd.Series(values, dtype="str")
    nm.ARROW_FAST_PATH = True
    try:
        fast = normalize_ids([col], opts, **kw)  # type: ignore[arg-type]
        nm.ARROW_FAST_PATH = False
        slow = normalize_ids([col], opts, **kw)  # type: ignore[arg-type]
    finally:
        nm.ARROW_FAST_PATH = True
    return fast, slow


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("opts", [NormalizeOptions(), NormalizeOptions(strip=False),
                                  NormalizeOptions(casefold=False)])
def test_fast_path_equals_the_per_value_path(name: str, opts: NormalizeOptions) -> None:
    try:
        fast, slow = _both(CASES[name], opts, duplicates="keep-first")
    except IdError:  # e.g. strip=False keeps "a" and "A " apart: no error either way
        pytest.fail("unexpected IdError")
    assert list(fast.keys) == list(slow.keys)  # type: ignore[attr-defined]
    assert np.array_equal(fast.rows, slow.rows)  # type: ignore[attr-defined]
    assert fast.report == slow.report  # type: ignore[attr-defined]


def test_the_fast_path_is_taken_and_errors_are_the_same() -> None:
    calls = []
    real = nm._normalize_arrow

    def spy(*a: object) -> object:
        out = real(*a)  # type: ignore[arg-type]
        calls.append(out is not None)
        return out

    nm._normalize_arrow = spy  # type: ignore[assignment]
    try:
        normalize_ids([pd.Series(["a", "b"], dtype="str")])
        with pytest.raises(IdError, match="repeat") as fast_err:
            normalize_ids([pd.Series(["a", "A"], dtype="str")])
        with pytest.raises(IdError, match="empty or missing"):  # falls back to word the error
            normalize_ids([pd.Series(["a", "  "], dtype="str")])
        normalize_ids([pd.Series(["é", "b"], dtype="str")])  # Unicode: per value
    finally:
        nm._normalize_arrow = real
    assert calls == [True, True, False, False]
    nm.ARROW_FAST_PATH = False
    try:
        with pytest.raises(IdError, match="repeat") as slow_err:
            normalize_ids([pd.Series(["a", "A"], dtype="str")])
    finally:
        nm.ARROW_FAST_PATH = True
    assert str(fast_err.value) == str(slow_err.value)
