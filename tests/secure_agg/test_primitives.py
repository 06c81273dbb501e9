"""Building blocks: Shamir, mask PRG (KATs), share encryption, quantisation, graph."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
import random

import numpy as np
import pytest

from party.errors import RemoteProtocolError
from secure_agg import SecAggParams, graph, keys, prg, quantize, shamir
from secure_agg.keys import ShareDecryptionError

# ---- Shamir -------------------------------------------------------------------------


def _is_probable_prime(n: int, rounds: int = 40) -> bool:
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    rng = random.Random(1)
    for _ in range(rounds):
        a = rng.randrange(2, n - 1)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_field_is_prime_and_holds_every_32_byte_secret() -> None:
    assert _is_probable_prime(shamir.PRIME)
    assert shamir.PRIME > 1 << 256


def test_shamir_every_t_subset_rebuilds_and_fewer_do_not() -> None:
    secret = os.urandom(32)
    xs = [3, 5, 6, 9, 11, 12]
    shares = shamir.split(secret, xs, 3)
    pts = list(zip(xs, shares, strict=True))
    for sub in itertools.combinations(pts, 3):
        assert shamir.combine(list(sub), 3) == secret
    for pair in itertools.combinations(pts, 2):
        # t-1 shares with a wrong threshold give garbage, never the secret
        with contextlib.suppress(shamir.ShamirError):
            assert shamir.combine(list(pair), 2) != secret
    with pytest.raises(shamir.ShamirError, match="need 3 shares"):
        shamir.combine(pts[:2], 3)


def test_shamir_extreme_secrets_and_tampered_share() -> None:
    for secret in (bytes(32), b"\xff" * 32):
        sh = shamir.split(secret, [1, 2, 3], 2)
        assert shamir.combine([(2, sh[1]), (3, sh[2])], 2) == secret
    secret = os.urandom(32)
    sh = shamir.split(secret, [1, 2, 3, 4], 3)
    bad = bytearray(sh[0])
    bad[-1] ^= 1
    pts = [(1, bytes(bad)), (2, sh[1]), (3, sh[2])]
    # a flipped bit either lands outside 32 bytes (detected) or yields another value
    with contextlib.suppress(shamir.ShamirError):
        assert shamir.combine(pts, 3) != secret
    with pytest.raises(shamir.ShamirError, match="distinct"):
        shamir.combine([(1, sh[0]), (1, sh[0]), (2, sh[1])], 3)


# ---- PRG: known answers, domain separation, full-entropy seeds (threats row 10) --------


def test_aes256_ctr_keystream_matches_nist_sp800_38a_f55() -> None:
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    ctr = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    pt = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = bytes.fromhex("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5")
    ks = bytes(prg.keystream(key, 32, nonce=ctr))
    assert bytes(a ^ b for a, b in zip(ks, pt, strict=True)) == ct


def _hkdf_reference(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    # RFC 5869 with the standard library's HMAC, independent of `cryptography`
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def test_mask_key_derivation_matches_rfc5869_reference() -> None:
    seed = bytes(range(32))
    info = prg.DOMAIN + prg.context("self-mask", "kat", 7, "alice")
    assert prg.self_mask_key(seed, session="kat", round=7, client="alice") == _hkdf_reference(seed, info)


def test_mask_prg_known_answers() -> None:
    k = prg.self_mask_key(bytes(range(32)), session="kat", round=7, client="alice")
    assert k.hex() == "57fcbf20b3cb44a6812475cdf1c1df29006e80cfb2f951222fcff7e133655562"
    assert [int(v) for v in prg.expand(k, 4)] == [
        0x966FE3B6FF87A585, 0x90B03573A85B6704, 0xB801818324A68189, 0x228C445A575746C6
    ]
    k2 = prg.pairwise_mask_key(bytes(range(32, 64)), session="kat", round=7, a="bob", b="alice")
    assert k2.hex() == "91f2e5b71a2fffd7a9e3f599c8a82f08f7ca50c546e83a5ee78fa670aa29de8e"
    assert [int(v) for v in prg.expand(k2, 2)] == [0x91456060493CCEDA, 0xF0584CD924B3B3E4]


def test_masks_differ_per_round_pair_purpose_and_every_seed_bit() -> None:
    s = bytes(range(32))
    base = prg.pairwise_mask_key(s, session="x", round=1, a="a", b="b")
    assert base == prg.pairwise_mask_key(s, session="x", round=1, a="b", b="a")  # symmetric
    others = [
        prg.pairwise_mask_key(s, session="x", round=2, a="a", b="b"),
        prg.pairwise_mask_key(s, session="y", round=1, a="a", b="b"),
        prg.pairwise_mask_key(s, session="x", round=1, a="a", b="c"),
        prg.self_mask_key(s, session="x", round=1, client="a"),
    ]
    # No 32-bit fold of the seed (flwr#7522, FATE 1.x): flipping any single bit,
    # including in the last bytes that a 4-byte fold would cancel, changes the mask.
    for byte in (0, 4, 28, 31):
        t = bytearray(s)
        t[byte] ^= 0x80
        others.append(prg.pairwise_mask_key(bytes(t), session="x", round=1, a="a", b="b"))
    t = bytearray(s)
    t[0] ^= 1
    t[4] ^= 1  # cancels under an XOR fold of 4-byte words
    others.append(prg.pairwise_mask_key(bytes(t), session="x", round=1, a="a", b="b"))
    masks = [prg.expand(k, 64) for k in [base, *others]]
    for a, b in itertools.combinations(masks, 2):
        assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="32 bytes"):
        prg.hkdf(b"\x01" * 4, b"info")


@pytest.mark.parametrize("dtype", [np.uint64, np.uint32])
@pytest.mark.parametrize("length", [1, prg.BLOCK_WORDS, 2 * prg.BLOCK_WORDS + 7])
def test_blockwise_apply_equals_one_expansion_per_key(dtype: type, length: int) -> None:
    ks = [os.urandom(32) for _ in range(5)]
    ref = prg.MaskAccumulator(length, dtype)
    for k in ks[:3]:
        ref.add(k)
    for k in ks[3:]:
        ref.sub(k)
    got = prg.MaskAccumulator(length, dtype)
    got.apply(ks[:3], ks[3:])
    np.testing.assert_array_equal(got.total, ref.total)
    np.testing.assert_array_equal(ref.total, (prg.expand(ks[0], length, dtype) + prg.expand(ks[1], length, dtype)
                                              + prg.expand(ks[2], length, dtype) - prg.expand(ks[3], length, dtype)
                                              - prg.expand(ks[4], length, dtype)))


def test_mask_accumulator_adds_and_subtracts_mod_2_64() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    acc = prg.MaskAccumulator(1000)
    acc.add(k1)
    acc.add(k2)
    acc.sub(k1)
    np.testing.assert_array_equal(acc.total, prg.expand(k2, 1000))
    acc32 = prg.MaskAccumulator(10, np.uint32)
    acc32.sub(k1)
    acc32.add(k1)
    assert not acc32.total.any()


# ---- share encryption (threats row 9) ------------------------------------------------


def test_share_ciphertext_is_bound_to_session_round_stage_src_dst() -> None:
    a, b = keys.generate_keypair(), keys.generate_keypair()
    kab = keys.share_key(keys.agree(a.secret, b.public), session="s", round=1, a="a", b="b")
    kba = keys.share_key(keys.agree(b.secret, a.public), session="s", round=1, a="b", b="a")
    assert kab == kba
    aad = keys.associated_data(session="s", round=1, stage="share_keys", src="a", dst="b")
    blob = keys.seal(kab, b"payload", aad)
    assert keys.open_sealed(kba, blob, aad, what="t") == b"payload"
    wrong = [
        keys.associated_data(session="s", round=1, stage="share_keys", src="b", dst="a"),  # swapped
        keys.associated_data(session="s", round=0, stage="share_keys", src="a", dst="b"),  # replay
        keys.associated_data(session="t", round=1, stage="share_keys", src="a", dst="b"),
        keys.associated_data(session="s", round=1, stage="unmask", src="a", dst="b"),
    ]
    for bad in wrong:
        with pytest.raises(ShareDecryptionError, match="failed authentication"):
            keys.open_sealed(kab, blob, bad, what="t")
    flipped = bytearray(blob)
    flipped[20] ^= 1
    with pytest.raises(ShareDecryptionError):
        keys.open_sealed(kab, bytes(flipped), aad, what="t")
    with pytest.raises(RemoteProtocolError, match=r"invalid X25519|low order"):
        keys.agree(a.secret, bytes(32))
    assert "secret" not in repr(a) or a.secret.hex() not in repr(a)


# ---- quantisation and overflow (threats row 11) ---------------------------------------


def test_quantisation_error_below_one_step_and_weights_exact() -> None:
    p = SecAggParams(num_clients=3, vector_length=10_000, mode="secagg")
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, p.vector_length)
    enc = quantize.encode(x, 7, p, rng)
    vec, w = quantize.decode_sum(enc, p)
    assert w == 7.0
    assert np.abs(vec / 7 - np.clip(x, -p.clip, p.clip)).max() < p.step
    # stochastic rounding is unbiased: the mean error over many coordinates is ~0
    assert abs(float(np.mean(vec / 7 - np.clip(x, -p.clip, p.clip)))) < p.step / 20


def test_quantise_refuses_bad_input_and_weights() -> None:
    p = SecAggParams(num_clients=3, vector_length=4, mode="secagg")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        quantize.encode(np.zeros(5), 1, p)
    with pytest.raises(ValueError, match="NaN"):
        quantize.encode(np.array([0, np.nan, 0, 0]), 1, p)
    for w in (-1, 1.5, p.max_weight + 1):
        with pytest.raises(ValueError, match="max_weight"):
            quantize.encode(np.zeros(4), w, p)


def test_sum_at_the_overflow_boundary_is_exact_and_one_more_client_is_refused() -> None:
    # 32-bit modulus, 2**8 levels: n * max_weight * 2**7 < 2**31 allows n * max_weight < 2**24
    p = SecAggParams(num_clients=3, vector_length=2, mode="secagg", modulus_bits=32,
                     quant_bits=8, max_weight=1 << 22)
    total = np.zeros(3, dtype=np.uint32)
    for _ in range(3):
        total += quantize.encode(np.array([p.clip, -p.clip]), p.max_weight, p)
    vec, w = quantize.decode_sum(total, p)
    assert w == 3 * p.max_weight
    np.testing.assert_allclose(vec, [3 * p.max_weight * p.clip, -3 * p.max_weight * p.clip])
    from party.errors import ConfigError

    with pytest.raises(ConfigError, match=r"overflow.*At most 3 clients"):
        SecAggParams(num_clients=4, vector_length=2, mode="secagg", modulus_bits=32,
                     quant_bits=8, max_weight=1 << 22)


# ---- graph ------------------------------------------------------------------------------


def test_harary_graph_is_k_regular_symmetric_and_seeded() -> None:
    ids = [f"c{i}" for i in range(50)]
    g = graph.neighbours(ids, 8, b"s" * 32)
    assert all(len(v) == 8 and u not in v for u, v in g.items())
    assert all(u in g[v] for u in ids for v in g[u])
    assert g == graph.neighbours(list(reversed(ids)), 8, b"s" * 32)
    assert g != graph.neighbours(ids, 8, b"t" * 32)
    full = graph.neighbours(ids[:5], 8, b"s" * 32)
    assert all(len(v) == 4 for v in full.values())
    with pytest.raises(ValueError, match="even"):
        graph.neighbours(ids, 7, b"s" * 32)
