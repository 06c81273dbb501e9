"""party.npy: np.load(allow_pickle=False) without holding a lock over the data read."""

from __future__ import annotations

import io
import pickle
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import party.npy
from party.npy import NPY_HEADER_LOCK, load_npy, load_npz

ARRAYS = [
    np.arange(12.0).reshape(3, 4),
    np.asfortranarray(np.arange(24, dtype=np.int32).reshape(2, 3, 4)),
    np.float32(3.5),
    np.zeros((0, 5), dtype=np.int8),
    np.array([True, False]),
    np.array(["ab", "c"]),
    np.array([b"xy", b""], dtype="S2"),
    np.arange(5, dtype=">i2"),
    np.array([1 + 2j], dtype=np.complex64),
    np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", ">f8")]),
    np.array(["2024-01-02"], dtype="datetime64[D]"),
]


def _npy(a: Any, **kw: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, **kw)
    return buf.getvalue()


def _same(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert got.flags.f_contiguous == ref.flags.f_contiguous
    assert got.flags.c_contiguous == ref.flags.c_contiguous
    assert (got == ref).all()


@pytest.mark.parametrize("a", ARRAYS, ids=lambda a: f"{np.asarray(a).dtype}{np.shape(a)}")
def test_round_trip_matches_np_load(a: Any, tmp_path: Path) -> None:
    data = _npy(a)
    ref = np.load(io.BytesIO(data), allow_pickle=False)
    for src in (data, bytearray(data), memoryview(data)):
        got = load_npy(src)
        _same(got, ref)
        assert got.flags.writeable
    (tmp_path / "a.npy").write_bytes(data)
    _same(load_npy(tmp_path / "a.npy"), ref)
    _same(load_npy(str(tmp_path / "a.npy")), ref)


def test_fortran_order_is_honoured() -> None:
    a = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    got = load_npy(_npy(a))
    assert got.flags.f_contiguous and not got.flags.c_contiguous and (got == a).all()


def test_mmap_mode_reads_a_path_read_only(tmp_path: Path) -> None:
    a = np.asfortranarray(np.arange(20, dtype=np.int64).reshape(4, 5))
    np.save(tmp_path / "rows.npy", a)
    m = load_npy(tmp_path / "rows.npy", mmap_mode="r")
    assert isinstance(m, np.memmap) and not m.flags.writeable and (m == a).all()
    assert m.flags.f_contiguous
    with pytest.raises(ValueError, match="needs a path"):
        load_npy(_npy(a), mmap_mode="r")


def test_format_3_header_is_read_too() -> None:
    a = np.array([(7,)], dtype=[("\u00e9\u1234", "<i4")])
    with pytest.warns(UserWarning, match="3.0"):
        data = _npy(a)
    assert data[6:8] == b"\x03\x00"
    _same(load_npy(data), a)


def test_object_arrays_and_pickles_are_refused() -> None:
    evil = _npy(np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Object arrays cannot be loaded when allow_pickle=False"):
        load_npy(evil)
    with pytest.raises(ValueError, match=r"not \.npy data.*pickle is refused"):
        load_npy(pickle.dumps(np.arange(3)))


def _header(shape: Any, descr: str = "<f8", **extra: Any) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape,
                                               **extra})
    return buf.getvalue()


def test_truncated_and_malformed_input_is_a_clear_value_error() -> None:
    data = _npy(np.arange(10.0))
    with pytest.raises(ValueError, match=r"truncated .npy data: .*\(10,\) of float64 \(80 bytes\), only 77"):
        load_npy(data[:-3])
    with pytest.raises(ValueError, match=r"not \.npy data.*EOF: reading magic string"):
        load_npy(data[:5])
    with pytest.raises(ValueError, match="EOF: reading array header"):
        load_npy(data[:20])
    body = data[len(_header((10,))):]
    assert _header((10,)) + body == data
    with pytest.raises(ValueError, match=r"declares shape \(99,\).*792 bytes"):
        load_npy(_header((99,)) + body)
    with pytest.raises(ValueError, match=r"truncated .npy data: .*\(1000000, 1000000\)"):
        load_npy(_header((10**6, 10**6)) + body)  # refused before anything is allocated
    with pytest.raises(ValueError, match="negative dimension"):
        load_npy(_header((-1,)) + body)
    with pytest.raises(ValueError, match="correct keys"):
        load_npy(_header((10,), extra=1) + body)
    with pytest.raises(ValueError, match="descr is not a valid dtype"):
        load_npy(_header((10,), descr="not a dtype") + body)
    with pytest.raises(ValueError, match="we only support format version"):
        load_npy(data[:6] + b"\x09\x00" + data[8:])


def test_npz_matches_np_load_and_names_a_bad_member(tmp_path: Path) -> None:
    arrays = {"params/0": np.eye(3), "state/m/0": np.asfortranarray(np.ones((2, 3))), "x": np.int8(4)}
    for save in (np.savez, np.savez_compressed):
        buf = io.BytesIO()
        save(buf, **arrays)
        got = load_npz(buf.getvalue())
        with np.load(io.BytesIO(buf.getvalue()), allow_pickle=False) as ref:
            assert list(got) == ref.files
            for k in ref.files:
                _same(got[k], ref[k])
    np.savez(tmp_path / "a.npz", **arrays)
    assert set(load_npz(tmp_path / "a.npz")) == set(arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ok.npy", _npy(np.arange(3)))
        z.writestr("evil.npy", _npy(np.array([None], dtype=object), allow_pickle=True))
    with pytest.raises(ValueError, match=r"evil in the \.npz: Object arrays cannot be loaded"):
        load_npz(buf.getvalue())
    with pytest.raises(zipfile.BadZipFile):
        load_npz(b"PK\x03\x04 not really a zip")


def test_the_lock_is_held_for_the_header_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread's header parse waits on the lock; the data is read without it."""
    seen: list[bool] = []
    real = party.npy._HEADER_READERS[(1, 0)]

    def header_reader(fp: Any) -> Any:
        seen.append(NPY_HEADER_LOCK.locked())
        return real(fp)

    class Data(io.BytesIO):
        def readinto(self, b: Any) -> int:
            seen.append(NPY_HEADER_LOCK.locked())
            return super().readinto(b)

    monkeypatch.setitem(party.npy._HEADER_READERS, (1, 0), header_reader)
    data = _npy(np.arange(1000.0))
    assert (party.npy._read(Data(data), len(data)) == np.arange(1000.0)).all()
    assert seen == [True, False]

    done = threading.Event()
    with NPY_HEADER_LOCK:
        t = threading.Thread(target=lambda: (load_npy(data), done.set()), daemon=True)
        t.start()
        assert not done.wait(0.3), "load_npy parsed a header without NPY_HEADER_LOCK"
    assert done.wait(5)
