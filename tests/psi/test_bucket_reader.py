"""psi.buckets._batches: the bounded-memory CSV reader cuts blocks only at record ends."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from party.errors import ConfigError
from psi import buckets


def _rows_of(path: Path) -> list[list[str]]:
    out: list[list[str]] = []
    for b in buckets._batches(path):
        cols = [b.column(i).to_pylist() for i in range(b.num_columns)]
        out += [list(r) for r in zip(*cols, strict=True)]
    return out


def _write(path: Path, header: list[str], rows: list[list[str]], *, bom: bool = False,
           crlf: bool = False) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n" if crlf else "\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode())


@pytest.mark.parametrize("block", [7, 16, 64, 1 << 20])
@pytest.mark.parametrize("crlf", [False, True])
def test_batches_keep_quoted_newlines_and_quotes_whole_across_block_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, crlf: bool) -> None:
    rnd = random.Random(block)
    pieces = ["a", "b,c", 'say "hi"', "two\nlines", "x\r\ny", "", "é", '"', "\n"]
    rows = [[f"id{i}", rnd.choice(pieces) + rnd.choice(pieces), str(i)] for i in range(300)]
    p = tmp_path / "t.csv"
    _write(p, ["id", "note", "n"], rows, bom=True, crlf=crlf)
    monkeypatch.setattr(buckets, "BATCH_BYTES", block)
    got = _rows_of(p)
    with open(p, encoding="utf-8-sig", newline="") as f:
        want = list(csv.reader(f))[1:]
    assert got == want
    assert len(got) == 300


def test_batches_read_a_file_without_final_newline_and_a_quoted_header(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b'"id","x\ny"\n1,2\n3,"4\n5"')
    monkeypatch.setattr(buckets, "BATCH_BYTES", 3)
    assert _rows_of(p) == [["1", "2"], ["3", "4\n5"]]


def test_record_ends_ignore_newlines_inside_quotes() -> None:
    assert buckets._record_ends(b'a,"b\nc"\nd').tolist() == [8]
    assert buckets._record_ends(b'a,"b\nc').tolist() == []
    assert buckets._record_ends(b"no newline").tolist() == []
    assert buckets._record_ends(b'a,"q""\n"\n').tolist() == [9]
    assert buckets._record_ends(b'h\n1,"x\ny"\n2\n').tolist() == [2, 10, 12]


def test_an_unclosed_quote_is_a_clear_error_not_a_growing_buffer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b'id,x\n1,"never closed\n' + b"2,3\n" * 5000)
    monkeypatch.setattr(buckets, "BATCH_BYTES", 1024)
    monkeypatch.setattr(buckets, "MAX_RECORD_BYTES", 8192)
    with pytest.raises(ConfigError, match="never closed"):
        list(buckets._batches(p))
