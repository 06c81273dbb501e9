"""The sans-I/O PSI session: correctness, agreed order, modes, n parties, faults, leakage."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from party.codec import decode, encode
from party.errors import LocalProtocolError, RemoteProtocolError
from psi.group import hash_to_group
from psi.messages import Count, Hello, Points
from psi.normalize import NormalizeOptions
from psi.protocol import TRANSITIONS, ConfigMismatch, PsiConfig, PsiSession, Send, Stage
from tests.psi.helpers import make_sessions, pump


def _ids(r: random.Random, n: int, universe: int) -> list[bytes]:
    return [f"cust-{i}".encode() for i in r.sample(range(universe), n)]


def _rows_as_ids(sets: dict[str, list[bytes]], results: dict) -> dict[str, list[bytes]]:
    return {p: [sets[p][int(i)] for i in r.rows] for p, r in results.items() if r.rows is not None}


@pytest.mark.parametrize(
    ("na", "nb", "overlap"),
    [
        (200, 200, 0.5),
        (200, 200, 0.0),  # disjoint (threats row 16)
        (200, 200, 1.0),  # identical sets
        (50, 400, 1.0),  # unequal sizes, small one inside the big one
        (0, 300, 0.0),  # empty set on one side (threats row 16)
        (0, 0, 0.0),  # both empty
        (1, 1, 1.0),
    ],
)
def test_two_party_matches_plain_intersection_in_one_order(na: int, nb: int, overlap: float) -> None:
    r = random.Random(na * 1000 + nb + int(overlap * 10))
    shared = _ids(r, int(min(na, nb) * overlap), 10**6)
    a = shared + [f"a-{i}".encode() for i in range(na - len(shared))]
    b = shared + [f"b-{i}".encode() for i in range(nb - len(shared))]
    r.shuffle(a)
    r.shuffle(b)
    sets = {"bank": a, "fintech": b}
    res = pump(make_sessions(sets, PsiConfig(chunk_points=64)))
    got = _rows_as_ids(sets, res)
    assert set(got["bank"]) == set(a) & set(b)
    assert got["bank"] == got["fintech"]  # same order at both parties
    assert res["bank"].size == res["fintech"].size == len(set(a) & set(b))
    assert res["bank"].peer_sizes == {"fintech": nb}


def test_agreed_order_is_the_sort_order_of_the_full_values() -> None:
    sets = {"a": [b"x", b"y", b"z", b"w"], "b": [b"z", b"y", b"x"]}
    sess = make_sessions(sets)
    res = pump(sess)
    order = [sets["a"][i] for i in res["a"].rows]
    # recompute the full values with both scalars and check the order is their byte order
    full = {x: hash_to_group([x], sess["a"].dst) for x in order}
    for s in sess.values():
        full = {x: _mask(v, s._scalar) for x, v in full.items()}
    assert order == sorted(order, key=lambda x: full[x])


def _mask(p: bytes, k: bytes) -> bytes:
    from psi.group import mask

    return mask(p, k)


@pytest.mark.parametrize("n_parties", [3, 4])
def test_n_parties_intersection_of_all(n_parties: int) -> None:
    r = random.Random(n_parties)
    universe = [f"u{i}".encode() for i in range(400)]
    sets = {f"p{k}": r.sample(universe, 250) for k in range(n_parties)}
    expect = set.intersection(*(set(s) for s in sets.values()))
    res = pump(make_sessions(sets, PsiConfig(chunk_points=50)))
    got = _rows_as_ids(sets, res)
    assert len(got) == n_parties
    first = got["p0"]
    assert set(first) == expect and len(expect) > 0
    assert all(g == first for g in got.values())


@pytest.mark.parametrize("n_parties", [2, 3])
def test_mode_one_only_receiver_learns(n_parties: int) -> None:
    sets = {f"p{k}": [b"a", b"b", f"own{k}".encode()] for k in range(n_parties)}
    res = pump(make_sessions(sets, PsiConfig(mode="one", receiver="p1")))
    assert sorted(sets["p1"][i] for i in res["p1"].rows) == [b"a", b"b"]
    for p, r in res.items():
        if p != "p1":
            assert r.rows is None and r.size is None


@pytest.mark.parametrize("n_parties", [2, 3])
def test_cardinality_mode_reveals_only_the_size(n_parties: int) -> None:
    sets = {f"p{k}": [b"a", b"b", b"c", f"own{k}".encode()] for k in range(n_parties)}
    res = pump(make_sessions(sets, PsiConfig(mode="cardinality")))
    assert all(r.size == 3 and r.rows is None for r in res.values())


@pytest.mark.parametrize(
    "other",
    [
        PsiConfig(salt=b"another salt"),
        PsiConfig(normalize=NormalizeOptions(casefold=False)),
        PsiConfig(normalize=NormalizeOptions(numbers="canonical")),
        PsiConfig(mode="cardinality"),
        PsiConfig(chunk_points=7),
    ],
)
def test_peer_with_another_config_is_refused_in_the_hello(other: PsiConfig) -> None:
    sets = {"a": [b"x"], "b": [b"x"]}
    sess = make_sessions(sets, configs={"a": PsiConfig(), "b": other})
    with pytest.raises(ConfigMismatch) as ei:
        pump(sess)
    assert ei.value.peer in ("a", "b")
    assert ei.value.fields  # names the differing field(s)
    assert "another PSI config" in str(ei.value)


@pytest.mark.parametrize("bad", [bytes(32), b"\xff" * 32])
def test_invalid_point_from_peer_is_refused_before_multiplying(bad: bytes) -> None:
    def tamper(src: str, s: Send) -> object:
        if src == "b" and s.step.startswith("chain:") and isinstance(s.msg, Points) and s.msg.count:
            return dataclasses.replace(s.msg, data=s.msg.data[:-32] + bad)
        return s.msg

    with pytest.raises(RemoteProtocolError, match="refused before multiplying"):
        pump(make_sessions({"a": [b"x", b"y"], "b": [b"x", b"z"]}), tamper=tamper)


def test_peer_sending_more_or_fewer_points_than_announced_is_refused() -> None:
    def extra(src: str, s: Send) -> object:
        if src == "b" and s.step.startswith("chain:") and isinstance(s.msg, Points):
            return dataclasses.replace(s.msg, data=s.msg.data + s.msg.data[:32])
        return s.msg

    with pytest.raises(RemoteProtocolError, match="more than the 2 points announced"):
        pump(make_sessions({"a": [b"x", b"y"], "b": [b"x", b"z"]}), tamper=extra)

    def fewer(src: str, s: Send) -> object:
        if src == "b" and s.step.startswith("chain:") and isinstance(s.msg, Points):
            return dataclasses.replace(s.msg, data=s.msg.data[:32])
        return s.msg

    with pytest.raises(RemoteProtocolError, match="ended after 1 of 2"):
        pump(make_sessions({"a": [b"x", b"y"], "b": [b"x", b"z"]}), tamper=fewer)


def test_identity_in_a_returned_stream_is_refused() -> None:
    def tamper(src: str, s: Send) -> object:
        if s.step.startswith("return:") and isinstance(s.msg, Points) and s.msg.count:
            return dataclasses.replace(s.msg, data=bytes(32) * s.msg.count)
        return s.msg

    with pytest.raises(RemoteProtocolError, match="identity"):
        pump(make_sessions({"a": [b"x"], "b": [b"x"]}), tamper=tamper)


def test_forged_message_fields_are_codec_errors() -> None:
    from party.errors import CodecError

    good = encode(Points(0, True, b"\x01" * 32))
    forged = bytes(good).replace(b"\x01" * 32, b"\x01" * 31 + b"\x02", 1)
    assert decode(forged) == Points(0, True, b"\x01" * 31 + b"\x02")  # still 32 bytes: decodes
    with pytest.raises(CodecError):
        decode(encode({"x": 1})[:-1])
    with pytest.raises(ValueError):
        Points(0, True, b"\x01" * 33)
    with pytest.raises(ValueError):
        Hello(config={}, n_items=-1, nonce=bytes(32))
    with pytest.raises(ValueError):
        Count(size=-3)


def test_stage_transitions_are_enforced() -> None:
    s = PsiSession("a", ["a", "b"], [b"x"])
    calls = {
        "hello": lambda: s.hello(),
        "on_hello": lambda: s.on_hello("b", Hello(config=s.public, n_items=1, nonce=bytes(32))),
        "own_chunks": lambda: list(s.own_chunks()),
        "receive": lambda: s.receive("b", "chain:b:1", Points(0, True, b"")),
    }
    for event, moves in TRANSITIONS.items():
        name = event.partition("[")[0]
        assert s.stage is Stage.IDLE
        if Stage.IDLE not in moves:
            with pytest.raises(LocalProtocolError, match=name):
                calls[name]()
    with pytest.raises(LocalProtocolError):
        s.result()


def test_leakage_audit_each_party_receives_only_declared_items() -> None:
    """threats.md row 20: what each party's transcript holds, in mode one and both."""
    ids = {"a": [b"alice", b"bob", b"carol"], "b": [b"bob", b"carol", b"dave", b"erin"]}
    for mode, learners in (("both", {"a", "b"}), ("one", {"a"})):
        log: list = []
        sess = make_sessions(ids, PsiConfig(mode=mode, receiver="a" if mode == "one" else None))
        pump(sess, log=log)
        plain_hashes = {
            hash_to_group([x], sess["a"].dst) for x in ids["a"] + ids["b"]
        }
        for party in ("a", "b"):
            received = [(src, step, m) for src, dst, step, m in log if dst == party]
            kinds = {step.split(":")[0] for _, step, _ in received}
            if party in learners:
                assert kinds <= {"hello", "chain", "return", "result"}
            else:
                assert kinds <= {"hello", "chain"}  # never its own full values back
            for _, _step, m in received:
                if isinstance(m, Hello):  # config, size, nonce; no ID
                    assert set(m.config) == {"protocol", "group", "mode", "receiver", "parties",
                                             "normalize", "salt_sha256", "chunk_points"}
                    assert isinstance(m.n_items, int)
                    continue
                assert isinstance(m, Points)
                pts = {m.data[i : i + 32] for i in range(0, len(m.data), 32)}
                assert not pts & plain_hashes  # never an unmasked H(id)
                for x in ids["a"] + ids["b"]:
                    assert x not in m.data  # never a raw ID


def test_rows_index_the_keys_and_are_numpy() -> None:
    sets = {"a": [b"1", b"2", b"3"], "b": [b"3", b"1"]}
    res = pump(make_sessions(sets))
    assert isinstance(res["a"].rows, np.ndarray)
    assert sorted(int(i) for i in res["a"].rows) == [0, 2]
    assert sorted(int(i) for i in res["b"].rows) == [0, 1]


def test_messages_never_exceed_the_chunk_size() -> None:
    """threats row 14: streams are cut into chunks of at most chunk_points points."""
    log: list = []
    sets = {"a": [f"{i}".encode() for i in range(1000)], "b": [f"{i}".encode() for i in range(500, 1700)]}
    res = pump(make_sessions(sets, PsiConfig(chunk_points=128)), log=log)
    assert res["a"].size == 500
    sizes = [len(encode(m)) for *_, m in log]
    assert max(sizes) <= 128 * 32 + 200
    assert sum(1 for *_, step, m in log if step.startswith("chain:")) >= 2 * (1000 // 128)
