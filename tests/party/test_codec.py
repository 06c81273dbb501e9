from __future__ import annotations

import contextlib
import dataclasses
import struct

import numpy as np
import pytest

from party import CodecError, decode, encode, wire


@wire("test.point", version=2)
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    label: str
    data: np.ndarray

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x must be >= 0")


VALUES = [
    None, True, False, 0, -1, 2**200, -(2**77), 1.5, float("inf"), "", "héllo ✓",
    b"", b"\x00\xff", [], [1, [2, [3]]], {"a": 1, 7: [None]}, (1, 2),
]


@pytest.mark.parametrize("v", VALUES)
def test_roundtrip_scalars(v: object) -> None:
    out = decode(encode(v))
    assert out == (list(v) if isinstance(v, tuple) else v)
    assert type(out) is (list if isinstance(v, tuple) else type(v))


@pytest.mark.parametrize(
    "dtype",
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64", "complex64", "complex128", ">f8", ">i4"],
)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (2, 0, 3), (2, 3, 4, 5)])
def test_roundtrip_arrays(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a = np.asarray(rng.standard_normal(shape) * 100).astype(dtype)
    b = decode(encode(a))
    assert b.shape == a.shape
    assert b.dtype == a.dtype.newbyteorder("<") or b.dtype == a.dtype
    np.testing.assert_array_equal(b, a)


def test_noncontiguous_and_writable() -> None:
    a = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    b = decode(encode(a))
    np.testing.assert_array_equal(a, b)
    b[0, 0] = 99  # decoded from a bytearray: a writable zero-copy view
    assert b[0, 0] == 99


def test_numpy_scalars_become_python() -> None:
    assert decode(encode([np.int64(3), np.float32(0.5), np.bool_(True)])) == [3, 0.5, True]


def test_record_roundtrip_and_validation() -> None:
    p = Point(3, "a", np.ones(3))
    q = decode(encode(p))
    assert isinstance(q, Point) and q.x == 3 and q.label == "a"
    np.testing.assert_array_equal(q.data, p.data)
    # __post_init__ runs on decode: a forged field value is refused.
    forged = encode(Point(3, "a", np.ones(1))).replace(
        b"\x03\x01\x00\x00\x00\x03", b"\x03\x01\x00\x00\x00\xfd"
    )
    with pytest.raises(CodecError, match="rejected"):
        decode(forged)


def test_refuses_unknown_objects() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (print, ("pwned",))

    with pytest.raises(TypeError, match="never pickled"):
        encode(Evil())
    with pytest.raises(TypeError):
        encode(np.array(["a", "b"]))
    with pytest.raises(TypeError):
        encode(np.array([object()], dtype=object))


@pytest.mark.parametrize(
    ("buf", "match"),
    [
        (b"", "bad magic"),
        (b"XXX\x01\x00", "bad magic"),
        (b"TSR\x09\x00", "version"),
        (b"TSR\x01\x63", "unknown type tag"),
        (b"TSR\x01\x05" + struct.pack("<Q", 10) + b"abc", "truncated"),
        (b"TSR\x01\x00\x00", "trailing"),
        (b"TSR\x01\x07" + struct.pack("<Q", 2**40), "list claims"),
        (b"TSR\x01\x09\x03<f8\x01" + struct.pack("<QQ", 2**40, 8 * 2**40), "truncated"),
        (b"TSR\x01\x09\x03|O\x00", "not allowed"),
        (b"TSR\x01\x09\x03<f8\x01" + struct.pack("<QQ", 3, 16) + b"\x00" * 16, "does not match"),
        (b"TSR\x01\x0a\x04\x00nope\x01\x00", "unknown message type"),
        (b"TSR\x01\x05" + struct.pack("<Q", 2) + b"\xff\xfe", "UTF-8"),
        (b"TSR\x01" + b"\x07" + struct.pack("<Q", 1) * 1 + (b"\x07" + struct.pack("<Q", 1)) * 80,
         "nesting"),
    ],
)
def test_malformed_buffers(buf: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode(buf)


def test_wrong_record_version_and_fields() -> None:
    buf = encode(Point(1, "x", np.zeros(1)))
    i = buf.index(b"test.point") + len(b"test.point")
    bad = bytes(buf[:i]) + struct.pack("<H", 1) + bytes(buf[i + 2 :])
    with pytest.raises(CodecError, match="version 1"):
        decode(bad)


def test_size_limit_checked_first() -> None:
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode(encode(np.zeros(1000)), max_bytes=100)


def test_fuzz_never_crashes() -> None:
    rng = np.random.default_rng(1)
    base = bytes(encode({"a": [1, 2.0, "x", np.arange(6).reshape(2, 3)], "b": b"zz"}))
    for _ in range(3000):
        b = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
        b = b[: rng.integers(4, len(b) + 1)]
        with contextlib.suppress(CodecError):
            decode(bytes(b))
