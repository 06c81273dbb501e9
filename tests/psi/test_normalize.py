"""ID normalisation: equivalent spellings meet, ambiguous ones are reported, bad IDs are refused."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from psi.normalize import IdError, NormalizeOptions, normalize_ids


def keys(values: list, **kw) -> list[bytes]:  # type: ignore[type-arg]
    return list(normalize_ids([values], NormalizeOptions(**kw)).keys)


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


def test_packed_keys_behave_as_a_sequence_of_bytes() -> None:
    from psi.normalize import PackedKeys

    raw = [b"a", b"", b"\xc3\xa9t\xc3\xa9", b"x" * 300]
    pk = PackedKeys.from_list(raw)
    assert len(pk) == 4 and list(pk) == raw and pk == raw
    assert pk[2] == raw[2] and pk[-1] == raw[-1] and pk[1:3] == raw[1:3]
    assert pk.take(np.array([3, 0])) == [raw[3], raw[0]]
    with pytest.raises(IndexError, match="out of range"):
        pk[4]
    with pytest.raises(ValueError, match="offsets"):
        PackedKeys(b"abc", np.array([0, 2]))


def test_chunked_normalisation_spans_chunk_boundaries() -> None:
    """Missing IDs and duplicates are found across chunks; a pyarrow-backed column works."""
    from psi.normalize import CHUNK_ROWS

    n = CHUNK_ROWS * 2 + 123
    ids = [f"ID{i}" for i in range(n)]
    ids[CHUNK_ROWS + 5] = " id3 "  # duplicate of row 3, in the second chunk
    ids[n - 1] = "ID0"  # duplicate of row 0, in the last chunk
    col = pd.Series(ids, dtype="string[pyarrow]")
    res = normalize_ids([col], duplicates="keep-first")
    assert res.report.duplicates_dropped == 2 and len(res.keys) == n - 2
    assert list(res.rows[:4]) == [0, 1, 2, 3] and CHUNK_ROWS + 5 not in set(res.rows)
    assert res.keys[CHUNK_ROWS + 5] == f"id{CHUNK_ROWS + 6}".encode()  # shifted past the dropped row
    assert list(res.keys) == [ids[i].strip().lower().encode() for i in res.rows]
    with pytest.raises(IdError, match=rf"2 of {n} rows repeat .*rows 65541, {n - 1}"):
        normalize_ids([col])
    ids[CHUNK_ROWS * 2 + 7] = None  # type: ignore[call-overload]
    ids[9] = "  "
    with pytest.raises(IdError, match=rf"2 of {n} rows have an empty or missing ID \(rows 9, {CHUNK_ROWS * 2 + 7};"):
        normalize_ids([ids])
