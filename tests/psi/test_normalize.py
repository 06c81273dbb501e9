"""ID normalisation: equivalent spellings meet, ambiguous ones are reported, bad IDs are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from psi.normalize import IdError, NormalizeOptions, normalize_ids


def keys(values: list, **kw) -> list[bytes]:  # type: ignore[type-arg]
    return normalize_ids([values], NormalizeOptions(**kw)).keys


def test_equivalent_spellings_give_one_key() -> None:
    variants = ["Zoë", "Zoe\u0308", " ZOË ", "\ufeffzoë\r\n", "zoë\t"]
    assert len(set(keys(variants[:1]) + keys(variants[1:2]) + keys(variants[2:3])
                   + keys(variants[3:4]) + keys(variants[4:5]))) == 1
    assert keys(["Straße"]) == keys(["STRASSE"])  # casefold, not lower()


def test_options_can_be_switched_off() -> None:
    assert keys(["A "], strip=False, casefold=False) == [b"A "]
    assert keys(["Zoe\u0308"], unicode_form=None) != keys(["Zoë"], unicode_form=None)


def test_typed_numbers_and_number_like_strings() -> None:
    res = normalize_ids([[7, np.int64(8), 1.5, 2.0]])
    assert res.keys == [b"7", b"8", b"1.5", b"2"]
    assert res.report.typed_values == 4
    res = normalize_ids([["007", "1.0", "12"]])
    assert res.keys == [b"007", b"1.0", b"12"]  # 'keep': unchanged, but reported
    assert res.report.leading_zero_strings == 1 and res.report.decimal_strings == 1
    assert any("'007'" in n for n in res.report.notes)
    canon = normalize_ids([["007", "1.50", "-0", "+3"]], NormalizeOptions(numbers="canonical"))
    assert canon.keys == [b"7", b"1.5", b"0", b"3"]


def test_missing_and_empty_are_refused_with_counts_and_rows() -> None:
    with pytest.raises(IdError, match=r"4 of 6 rows .* \(rows 1, 2, 3, 4"):
        normalize_ids([["a", None, math.nan, "  ", "", "b"]])


def test_duplicates_error_or_keep_first() -> None:
    with pytest.raises(IdError, match="2 of 4 rows repeat"):
        normalize_ids([["a", "A", "b", " b"]])
    res = normalize_ids([["a", "A", "b", " b"]], duplicates="keep-first")
    assert res.keys == [b"a", b"b"] and list(res.rows) == [0, 2]
    assert res.report.duplicates_dropped == 2


def test_composite_keys_are_unambiguous() -> None:
    res = normalize_ids([["a|1", "a"], ["b", "1|b"]], names=["x", "y"])
    assert res.keys[0] != res.keys[1]
    with pytest.raises(IdError, match="missing y"):
        normalize_ids([["a", "b"], ["c", None]], names=["x", "y"])
