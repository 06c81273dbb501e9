"""The CKKS interactive layer against float64 (threats.md rows 25, 27, 29)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from party import decode, encode
from party.errors import CodecError, LocalProtocolError, RemoteProtocolError
from vfl.he.context import CkksParams, DecryptionRangeError, KeyMismatch
from vfl.he.layer import (
    ACTIVE_TRANSITIONS,
    PASSIVE_TRANSITIONS,
    ActiveLayer,
    PassiveLayer,
    Stage,
)
from vfl.he.messages import MaskedForward

LR, MU = 0.05, 0.9


def make_pair(d: int = 4, k: int = 3, params: CkksParams | None = None, seed: int = 0):
    params = params or CkksParams()
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 0.5, (d, k))
    p = PassiveLayer(params, w0, lr=LR, momentum=MU, rng=np.random.default_rng(seed + 1))
    a = ActiveLayer(params, d, k, lr=LR, momentum=MU, rng=np.random.default_rng(seed + 2))
    p.on_public_context(_wire(a.public_context()))
    a.on_public_context(_wire(p.public_context()))
    return p, a, w0


def _wire(msg):  # every message goes through the codec, as over a transport
    return decode(encode(msg))


def step(p, a, h, delta_fn):
    z = a.on_forward_share(_wire(p.on_masked_forward(_wire(a.on_activations(_wire(p.forward(h, train=True)))))))
    delta = delta_fn(z)
    g = p.on_grad_share(_wire(a.on_masked_backward(_wire(p.on_masked_gradient(_wire(a.backward(delta)))))))
    return z, delta, g


@pytest.mark.parametrize("rows", [37, 5000])  # 5000 > 4096 slots: chunked (row 29)
def test_he_matches_float64_each_step(rows: int) -> None:
    d, k = 4, 3
    p, a, w = make_pair(d, k)
    m = np.zeros_like(w)
    rng = np.random.default_rng(9)
    for _ in range(3):
        h = np.tanh(rng.normal(size=(rows, d))) * 4
        z, delta, g = step(p, a, h, lambda z: np.sin(z) / rows)
        np.testing.assert_allclose(z, h @ w, atol=1e-5, rtol=0)
        np.testing.assert_allclose(g, delta @ w.T, atol=1e-5, rtol=0)
        m = MU * m + h.T @ delta
        w = w - LR * m
        np.testing.assert_allclose(a.w + p.w, w, atol=1e-5, rtol=0)
        assert np.abs(a.w).max() <= a.params.share_bound  # shares stay bounded


def test_worst_case_inputs_within_budget() -> None:
    """Inputs and weights at their bounds (not random) keep the error small (threats.md row 25)."""
    d, k, rows = 8, 4, 256
    for sign in (1.0, -1.0):
        p, a, w = make_pair(d, k)
        a.w = np.full_like(a.w, sign * a.params.share_bound)  # largest share A ever holds
        p.w = w - a.w
        vb = p.params.value_bound
        h = np.full((rows, d), sign * vb)
        h[::2] *= -1
        z, delta, g = step(p, a, h, lambda z: np.full_like(z, 1.0))
        np.testing.assert_allclose(z, h @ w, atol=1e-5, rtol=0)
        np.testing.assert_allclose(g, delta @ w.T, atol=1e-5, rtol=0)


def test_inference_is_steps_1_to_3() -> None:
    p, a, w = make_pair()
    h = np.random.default_rng(1).uniform(-1, 1, (50, 4))
    enc = p.forward(h, train=False)
    assert enc.row_blocked == []
    z = a.on_forward_share(p.on_masked_forward(a.on_activations(enc)))
    np.testing.assert_allclose(z, h @ w, atol=1e-5)
    assert p.stage is Stage.IDLE and a.stage is Stage.IDLE


def test_values_returned_to_peer_are_rounded() -> None:
    p, a, _ = make_pair()
    h = np.random.default_rng(2).uniform(-1, 1, (20, 4))
    share = p.on_masked_forward(a.on_activations(p.forward(h, train=True)))
    q = 2.0**p.params.round_bits
    assert np.array_equal(share.v * q, np.round(share.v * q))  # never a raw CKKS decryption
    a.on_forward_share(share)
    back = a.on_masked_backward(p.on_masked_gradient(a.backward(np.ones((20, 3)) / 20)))
    assert np.array_equal(back.g * q, np.round(back.g * q))


def test_masked_values_hide_the_product() -> None:
    """What P decrypts in step 3 is dominated by A's masks: uncorrelated with h W_A."""
    p, a, _ = make_pair()
    a.w = np.random.default_rng(3).uniform(-100, 100, a.w.shape)
    h = np.random.default_rng(4).uniform(-1, 1, (4096, 4))
    fwd = a.on_activations(p.forward(h, train=False))
    dec = p.keys.decrypt(p.keys.load_ciphertext(fwd.u[0][0], level="last"))
    truth = h @ a.w[:, 0]
    corr = np.corrcoef(dec[:4096], truth)[0, 1]
    assert abs(corr) < 0.1
    assert np.abs(dec).max() > 100 * np.abs(truth).max() / 4


def test_key_rotation_at_decryption_limit() -> None:
    params = CkksParams(max_decryptions=8)
    p, a, w = make_pair(params=params)
    m = np.zeros_like(w)
    rng = np.random.default_rng(5)
    first_p, first_a = p.keys.key_id, a.keys.key_id
    for _ in range(3):
        h = rng.uniform(-1, 1, (30, 4))
        z, delta, g = step(p, a, h, lambda z: z / 30)
        np.testing.assert_allclose(z, h @ w, atol=1e-5)
        np.testing.assert_allclose(g, delta @ w.T, atol=1e-5)
        m = MU * m + h.T @ delta
        w = w - LR * m
    assert p.rotations >= 1 and a.rotations >= 1
    assert p.keys.key_id != first_p and a.keys.key_id != first_a
    assert p.keys.decryptions <= 8 and a.keys.decryptions <= 8


def test_wrong_key_is_a_clear_error() -> None:
    p, a, _ = make_pair()
    p2, _, _ = make_pair(seed=7)  # another passive party's key
    a.w = np.random.default_rng(8).uniform(-1, 1, a.w.shape)
    h = np.full((10, 4), 0.5)
    enc = p2.forward(h, train=False)
    with pytest.raises(KeyMismatch, match="key"):
        a.on_activations(enc)
    # the key id forged to match, but the ciphertext made under another key
    forged = dataclasses.replace(enc, key_id=p.keys.key_id)
    fwd = a.on_activations(forged)
    p.forward(h, train=False)
    with pytest.raises(DecryptionRangeError, match=r"another key|tampered"):
        p.on_masked_forward(fwd)


def test_tampered_ciphertext_is_a_clear_error() -> None:
    p, a, _ = make_pair()
    h = np.random.default_rng(6).uniform(-1, 1, (16, 4))
    fwd = a.on_activations(p.forward(h, train=False))
    blob = bytearray(fwd.u[0][0])
    for i in range(200, len(blob), 997):  # flip bits all over the data
        blob[i] ^= 0x5A
    bad = MaskedForward(key_id=fwd.key_id, u=[[bytes(blob), *fwd.u[0][1:]]])
    with pytest.raises((CodecError, DecryptionRangeError)) as ei:
        p.on_masked_forward(bad)
    assert isinstance(ei.value, RemoteProtocolError)


def test_wrong_ciphertext_count_refused() -> None:
    p, a, _ = make_pair()
    fwd = a.on_activations(p.forward(np.zeros((8, 4)), train=False))
    with pytest.raises(RemoteProtocolError, match="expected"):
        p.on_masked_forward(MaskedForward(key_id=fwd.key_id, u=[fwd.u[0][:1]]))


@pytest.mark.parametrize(
    ("table", "role"), [(PASSIVE_TRANSITIONS, "passive"), (ACTIVE_TRANSITIONS, "active")]
)
def test_out_of_order_calls_refused(table, role) -> None:
    p, a, _ = make_pair()
    layer = p if role == "passive" else a
    for event, stage in itertools.product(table, Stage):
        method = event.partition("[")[0]
        if stage in table[event] or method in ("on_public_context", "abort"):
            continue
        layer.stage = stage
        with pytest.raises(LocalProtocolError, match=method):
            getattr(layer, method)(None) if method != "forward" else layer.forward(
                np.zeros((2, 4)), train=event.endswith("[train]"))
