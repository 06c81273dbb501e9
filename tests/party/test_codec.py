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


# ---- constrained field types (checked by the codec on decode) ---------------------

from typing import Annotated  # noqa: E402

from party.codec import (  # noqa: E402
    Array,
    ByteRows,
    Bytes,
    Ciphertexts,
    Flag,
    Names,
    NonNegInt,
    PosInt,
    Str,
    check_fields,
)


@wire("test.typed", version=1)
@dataclasses.dataclass(frozen=True)
class Typed:
    n: NonNegInt
    rows: PosInt
    ok: Flag
    mode: Annotated[str, Str(one_of=("a", "b"))]
    key: Annotated[bytes, Bytes(size=4)]
    names: Names
    keys: Annotated[np.ndarray, ByteRows(4, rows_like="names")]
    cts: Annotated[list[list[bytes]], Ciphertexts(cap=3, chunked=True)]
    v: Annotated[np.ndarray, Array((np.float64,), ndim=2, finite=True)]
    free: int  # no check beyond the codec's types


def _typed(**kw: object) -> Typed:
    base: dict[str, object] = {
        "n": 0, "rows": 1, "ok": True, "mode": "a", "key": b"abcd", "names": ["p", "q"],
        "keys": np.zeros((2, 4), np.uint8), "cts": [[b"x"], []], "v": np.zeros((2, 3)), "free": True}
    base.update(kw)
    return Typed(**base)  # type: ignore[arg-type]


def test_typed_message_roundtrips() -> None:
    out = decode(encode(_typed()))
    assert out.names == ["p", "q"] and out.keys.shape == (2, 4) and out.free is True


@pytest.mark.parametrize(("field", "value", "match"), [
    ("n", -1, r"'n' must be >= 0, got -1"),
    ("n", True, r"'n' must be an int, got bool"),  # bool is an int subclass: refused
    ("rows", 0, r"'rows' must be >= 1"),
    ("ok", 1, r"'ok' must be a bool, got int"),
    ("mode", "c", r"'mode' must be one of \['a', 'b'\]"),
    ("key", b"abc", r"'key' must be 4 bytes, got 3"),
    ("names", ["p", ""], r"'names' item 1 must not be empty"),
    ("names", "pq", r"'names' must be a list"),
    ("keys", np.zeros((3, 4), np.uint8), r"'keys' must be a uint8 array of shape \(2, 4\)"),
    ("keys", np.zeros((2, 4), np.int8), r"'keys' must be a uint8 array"),
    ("cts", [[b"x"]] * 4, r"'cts' must be a list of at most 3 chunks"),
    ("cts", [[b"x"] * 4], r"'cts' must be a list of at most 3 ciphertexts"),
    ("cts", [["x"]], r"'cts' ciphertexts must be bytes, got str"),
    ("v", np.zeros(3), r"'v' must be a 2-d float64 array"),
    ("v", np.zeros((2, 3), np.float32), r"'v' must be a float64 array, got float32"),
    ("v", np.full((1, 1), np.nan), r"'v' contains NaN or Inf"),
])
def test_a_forged_field_is_a_codec_error_naming_it(field: str, value: object, match: str) -> None:
    forged = encode(_typed(**{field: value}))
    with pytest.raises(CodecError, match=r"message 'test.typed': field " + match):
        decode(forged)
    with pytest.raises(ValueError, match=match):
        check_fields(_typed(**{field: value}))  # the same checks on a local message


def _protocol_messages() -> list[tuple[object, str, object]]:
    """(a valid message, a field, a forged value) for each package's constrained messages."""
    from ftl.messages import Done, GuestBackward, Hello, HostForward, PredictRounds
    from he.messages import MAX_CIPHERTEXTS, PublicContext
    from secure_agg.messages import AdvertiseKeys, PublicKeys, UnmaskShares
    from vfl.he.messages import EncActivations, ForwardShare
    from vfl.messages import Ack, EpochCommand, ScoreReady, TrainPlan

    plan = TrainPlan(mode="he", rows=10, id_digest="x", batch_size=4, epochs=2, seed=0,
                     val_fraction=0.1, k=2, lr_interactive=0.05, momentum=0.9, checkpoints=[0])
    k32 = np.zeros((2, 32), np.uint8)
    return [
        (plan, "rows", True), (plan, "mode", "cleartext"), (plan, "checkpoints", [-1]),
        (EpochCommand(action="train", epoch=0, best_epoch=-1), "action", "fly"),
        (EpochCommand(action="resume", epoch=-1, best_epoch=-1), "epoch", -2),
        (Ack(epoch=3), "epoch", False),
        (ScoreReady(ok=True, error=""), "ok", 0),  # a real flag, not an epoch number
        (EncActivations(key_id="k", rows=2, cols=[[b"c"]], row_blocked=[], context=b""),
         "row_blocked", [b"c"] * (MAX_CIPHERTEXTS + 1)),
        (ForwardShare(v=np.zeros((2, 2))), "v", np.array([[np.inf]])),
        (PublicContext(context=b"c", key_id="k"), "context", "c"),
        (HostForward(epoch=0, step=0, key_id="k", x=[b"c"], stats=np.zeros((1, 2)),
                     context=b""), "stats", np.zeros((2, 1))),
        (GuestBackward(epoch=0, step=0, loss=0.5), "step", True),
        (Hello(role="guest", has_labels=True, params={}, n_overlap=1, width=2, start_epoch=0,
               context=b"", key_id="k"), "n_overlap", True),  # FTL took a bool as an int
        (Done(epochs=2), "epochs", -1),
        (PredictRounds(rounds=1), "rounds", 1 << 17),
        (AdvertiseKeys("s", 0, bytes(32), bytes(32)), "enc_public", bytes(31)),
        (PublicKeys("s", 0, ["a", "b"], k32, k32, bytes(32)), "mask_public", k32[:1]),
        (UnmaskShares("s", 0, ["a"], np.zeros((1, 33), np.uint8), [], np.zeros((0, 33), np.uint8)),
         "round", True),
    ]


@pytest.mark.parametrize("case", range(18))
def test_protocol_messages_check_their_fields_on_decode(case: int) -> None:
    msg, field, value = _protocol_messages()[case]
    assert decode(encode(msg)) is not None  # the valid one decodes
    forged = encode(dataclasses.replace(msg, **{field: value}))  # type: ignore[type-var]
    with pytest.raises(CodecError, match=f"field {field!r}"):
        decode(forged)


def test_the_protocol_message_table_is_complete() -> None:
    assert len(_protocol_messages()) == 18
