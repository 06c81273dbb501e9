"""ristretto255 primitives: RFC known answers, commutativity, refusal of bad points."""

from __future__ import annotations

import hashlib

import pytest

from psi.group import (
    IDENTITY,
    GroupEngine,
    InvalidPoint,
    expand_message_xmd,
    from_uniform,
    hash_to_group,
    is_valid_point,
    mask,
    random_scalar,
)

QUUX = b"QUUX-V01-CS02-with-expander-SHA512-256"


@pytest.mark.parametrize(
    ("msg", "n", "expected"),
    [  # RFC 9380, Appendix K.3 (expand_message_xmd, SHA-512)
        (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
        (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
        (b"abcdef0123456789", 0x20,
         "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58"),
        (b"", 0x80,
         "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921b052b62eaed99b46f72f2ef4cc96"
         "bfaf254ebbbec091e1a3b9e4fb5e5b619d2e0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d584"
         "2cf5d13d7eb00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961"),
    ],
)
def test_expand_message_xmd_rfc9380_vectors(msg: bytes, n: int, expected: str) -> None:
    assert expand_message_xmd(msg, QUUX, n).hex() == expected


# RFC 9496 Appendix A.3 (element derivation from SHA-512 of the label)
RFC9496_A3 = [
    ("Ristretto is traditionally a short shot of espresso coffee",
     "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"),
    ("made with the normal amount of ground coffee but extracted with",
     "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b"),
    ("about half the amount of water in the same amount of time",
     "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826"),
    ("by using a finer grind.", "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a"),
    ("This produces a concentrated shot of coffee per volume.",
     "ae81e7dedf20a497e10c304a765c1767a42d6e06029758d2d7e8ef7cc4c41179"),
    ("Just pulling a normal shot short will produce a weaker shot",
     "e2705652ff9f5e44d3e841bf1c251cf7dddb77d140870d1ab2ed64f1a9ce8628"),
    ("and is not a Ristretto as some believe.",
     "80bd07262511cdde4863f8a7434cef696750681cb9510eea557088f76d9e5065"),
]


@pytest.mark.parametrize(("label", "expected"), RFC9496_A3)
def test_hash_to_group_kat_rfc9496(label: str, expected: str) -> None:
    assert from_uniform(hashlib.sha512(label.encode()).digest()).hex() == expected


def test_hash_to_group_is_rfc9380_composition_not_g_to_hash() -> None:
    msgs = [b"", b"alice", b"bob" * 100, "Zoë".encode()]
    dst = b"TEST-DST"
    blob = hash_to_group(msgs, dst)
    assert blob == b"".join(from_uniform(expand_message_xmd(m, dst, 64)) for m in msgs)
    # another DST (another session salt) gives unrelated points
    assert hash_to_group(msgs, b"OTHER-DST") != blob
    assert all(is_valid_point(blob[i : i + 32]) for i in range(0, len(blob), 32))


def test_masking_commutes() -> None:
    a, b = random_scalar(), random_scalar()
    pts = hash_to_group([str(i).encode() for i in range(50)], b"D")
    assert mask(mask(pts, a), b) == mask(mask(pts, b), a)
    assert mask(pts, a) != pts


BAD_ENCODINGS = [  # RFC 9496 Appendix A.2 (non-canonical / invalid), plus the identity
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
    IDENTITY.hex(),
]


@pytest.mark.parametrize("bad", BAD_ENCODINGS)
def test_invalid_or_identity_point_refused_before_multiplying(bad: str) -> None:
    good = hash_to_group([b"x", b"y"], b"D")
    with pytest.raises(InvalidPoint) as ei:
        mask(good + bytes.fromhex(bad), random_scalar())
    assert ei.value.index == 2
    assert not is_valid_point(bytes.fromhex(bad))


def test_truncated_point_refused() -> None:
    with pytest.raises(InvalidPoint, match="truncated"):
        mask(hash_to_group([b"x"], b"D") + b"\x01", random_scalar())


def test_engine_workers_match_inline_and_report_bad_index() -> None:
    msgs = [f"id{i}".encode() for i in range(600)]
    s = random_scalar()
    with GroupEngine(workers=2, min_parallel=64) as eng:
        pts = eng.hash_to_group(msgs, b"D")
        assert pts == hash_to_group(msgs, b"D")
        assert eng.mask(pts, s) == mask(pts, s)
        bad = pts[: 32 * 500] + bytes(32) + pts[32 * 501 :]
        with pytest.raises(InvalidPoint) as ei:
            eng.mask(bad, s)
        assert ei.value.index == 500
        assert eng.mask(pts, s) == mask(pts, s)  # the workers are still in step
        assert eng.ops == 600 + 3 * 600  # one hash batch, three mask batches


def test_worker_frames_round_trip_without_a_process() -> None:
    """The parent's and the worker's ends of the one frame format agree (psi._worker)."""
    import io

    from psi import _worker as w

    msgs = [b"a", b"b", b"c"]
    pts, s = hash_to_group(msgs, b"D"), random_scalar()
    req = io.BytesIO()
    w.write_request(req, b"M", s, 0, pts)
    w.write_request(req, b"M", s, 5, pts[:32] + IDENTITY)
    w.write_request(req, b"H", b"D", 0, w.pack_msgs(msgs))
    w.write_request(req, b"?", b"", 0, b"")
    req.seek(0)
    resp = io.BytesIO()
    w.serve(req, resp)  # returns at the end of its input, as when the parent closes stdin
    resp.seek(0)
    assert w.read_response(resp) == mask(pts, s)
    with pytest.raises(InvalidPoint) as ei:
        w.read_response(resp)
    assert ei.value.index == 6 and "identity" in ei.value.reason
    assert w.read_response(resp) == pts
    with pytest.raises(RuntimeError, match="unknown op"):
        w.read_response(resp)
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        w.read_response(resp)
