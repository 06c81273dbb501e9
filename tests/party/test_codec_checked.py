"""Constrained field types that replaced hand-written ``__post_init__`` validators: a bad
value is refused on decode with a ``CodecError`` naming the field, and (``Checked``
classes) with a ``ValueError`` naming it when the message is built locally."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
import pytest

from party.codec import Bytes, Checked, Str, decode, encode, wire
from party.errors import CodecError


@wire("test.checked", version=1)
@dataclasses.dataclass(frozen=True)
class _Msg(Checked):
    chunk: Annotated[bytes, Bytes(multiple_of=4)]
    digest: Annotated[bytes, Bytes(sizes=(0, 8))]
    name: Annotated[str, Str(nonempty=True, forbid="/")]


def _forged(**kw: object) -> bytes:
    """A ``_Msg`` with ``kw`` as it would arrive from a peer that skipped the local checks."""
    good = _Msg(b"abcd", b"", "p")
    raw = object.__new__(_Msg)
    for f in dataclasses.fields(_Msg):
        object.__setattr__(raw, f.name, kw.get(f.name, getattr(good, f.name)))
    return bytes(encode(raw))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("chunk", b"abcde", r"'chunk' must be a multiple of 4 bytes long, got 5"),
    ("chunk", "abcd", r"'chunk' must be bytes, got str"),
    ("digest", b"abc", r"'digest' must be 0 or 8 bytes, got 3"),
    ("name", "a/b", r"'name' may not contain '/'"),
    ("name", "", r"'name' must not be empty"),
])
def test_a_bad_field_is_refused_on_decode_and_when_built(field: str, value: object, match: str) -> None:
    assert decode(encode(_Msg(b"abcdabcd", bytes(8), "p"))) == _Msg(b"abcdabcd", bytes(8), "p")
    with pytest.raises(CodecError, match=r"message 'test.checked': field " + match):
        decode(_forged(**{field: value}))
    with pytest.raises(ValueError, match=r"_Msg: field " + match):
        _Msg(**{**dataclasses.asdict(_Msg(b"abcd", b"", "p")), field: value})  # type: ignore[arg-type]


def _wire_messages() -> list[tuple[object, str, object]]:
    """(a valid message, a field, a forged value) for the messages whose checks moved to field types."""
    from hfl.messages import AppMessage
    from hfl.messages import Hello as HflHello
    from party.handshake import RunConfirm, RunHello
    from psi.messages import Count, Hello, Points, Tags, UbOffer

    hello = Hello(config={}, n_items=1, nonce=bytes(32))
    run_hello = RunHello("p", "s", ["a", "b"], {}, 0, bytes(32))
    return [
        (hello, "n_items", -1), (hello, "n_items", True), (hello, "nonce", bytes(31)),
        (hello, "config", []), (hello, "resume", bytes(31)), (hello, "have", ["x" * 256]),
        (hello, "have", ["x"] * 4097),
        (Points(0, True, bytes(32)), "data", bytes(33)), (Points(0, True, b""), "index", -1),
        (Points(0, True, b""), "last", 1), (Tags(0, False, bytes(16)), "data", bytes(8)),
        (Count(3), "size", -3), (UbOffer(bytes(32), 0), "cache_id", bytes(16)),
        (UbOffer(bytes(32), 0), "n_items", False),
        (run_hello, "nonce", bytes(31)), (run_hello, "incarnation", True),
        (run_hello, "incarnation", -1), (run_hello, "parties", ["a", 1]), (run_hello, "info", []),
        (RunConfirm(bytes(32)), "transcript", b""),
        (HflHello("i1"), "incarnation", "a/b"), (HflHello("i1"), "incarnation", ""),
        (AppMessage("train", {"r": ["arrays", {}]}), "records", {"r": ["tensor", {}]}),
        (AppMessage("train", {"r": ["arrays", {}]}), "records", {"r": ["arrays", {"a": 1}]}),
    ]


@pytest.mark.parametrize("case", range(24))
def test_wire_messages_check_their_fields(case: int) -> None:
    msg, field, value = _wire_messages()[case]
    assert decode(encode(msg)) == msg
    raw = object.__new__(type(msg))
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        object.__setattr__(raw, f.name, value if f.name == field else getattr(msg, f.name))
    with pytest.raises(CodecError, match=f"field {field!r}"):
        decode(encode(raw))
    with pytest.raises(ValueError, match=f"field {field!r}"):
        dataclasses.replace(msg, **{field: value})  # type: ignore[type-var]


def test_the_message_table_is_complete() -> None:
    assert len(_wire_messages()) == 24


def _boost_messages() -> list[tuple[object, str, object]]:
    """SecureBoost messages (not ``Checked``: refused on decode only)."""
    from vfl.boost.messages import BoostPlan, ExportRequest, ExportTable, NodeRequest, SplitRequest
    from vfl.boost.woe import WoeMasked, WoeOpened

    plan = BoostPlan({}, "ou", b"k", 10, ["p"])
    return [
        (plan, "rows", True), (plan, "passives", [""]), (plan, "public_key", "k"),
        (SplitRequest(0, [1], [0]), "candidates", [-1]),  # a negative index would wrap around
        (NodeRequest(0, 0, [0], np.zeros(2, np.int32), [[0, 1, 2]]), "pairs", [[0, -1, 2]]),
        (ExportRequest("r", True), "consent", 1),
        (ExportTable([0], ["f"], [0.5]), "thresholds", ["0.5"]),
        (WoeMasked(b"", 0), "n", -1), (WoeOpened([1, 2]), "values", [1, 2.0]),
    ]


@pytest.mark.parametrize("case", range(9))
def test_boost_messages_check_their_fields_on_decode(case: int) -> None:
    msg, field, value = _boost_messages()[case]
    assert decode(encode(msg)) is not None
    with pytest.raises(CodecError, match=f"field {field!r}"):
        decode(encode(dataclasses.replace(msg, **{field: value})))  # type: ignore[type-var]


def test_the_boost_table_is_complete() -> None:
    assert len(_boost_messages()) == 9
