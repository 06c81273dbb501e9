"""FtlGuest/FtlHost state machines driven directly (no transport), and the CKKS product."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import tenseal as ts

from ftl import he
from ftl.plaintext import train_plaintext
from ftl.protocol import GUEST_TRANSITIONS, HOST_TRANSITIONS, FtlGuest, FtlHost, Stage
from he.keys import CkksKeys, load_public
from he.params import CkksParams, DecryptionRangeError, HeError, KeyMismatch
from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from tests.ftl.helpers import small_params, toy

CKKS = CkksParams()


def _pair(params=None, ckks=CKKS, seed=0):
    t = toy(seed=seed)
    p = params or small_params()
    g = FtlGuest(t.guest, p, ckks=ckks, rng=np.random.default_rng(1))
    h = FtlHost(t.host, p, ckks=ckks, rng=np.random.default_rng(2))
    h.on_hello(g.hello())
    g.on_hello(h.hello())
    return t, p, g, h


def _step(g: FtlGuest, h: FtlHost, epoch: int, step: int) -> float:
    gf = g.on_host_forward(h.begin_step(epoch, step))
    out = g.on_host_backward(h.on_guest_forward(gf))
    return h.on_guest_backward(out)


def test_encrypted_steps_match_plaintext_steps() -> None:
    """threats.md row 40: same loss at every step (within CKKS error), same final model."""
    t, p, g, h = _pair()
    plain_losses: list[float] = []
    ref = train_plaintext(t.guest, t.host, p, on_step=lambda e, s, v: plain_losses.append(v))
    he_losses = [_step(g, h, e, s) for e in range(p.epochs) for s in range(h.steps(e))]
    assert len(he_losses) == len(plain_losses) == 4
    diff = np.abs(np.array(he_losses) - np.array(plain_losses))
    assert diff.max() < 1e-6, diff
    wa = g.model.net.weight().detach().numpy()
    wb = h.model.net.weight().detach().numpy()
    np.testing.assert_allclose(wa, ref.guest.net.weight().detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(wb, ref.host.net.weight().detach().numpy(), atol=1e-6)
    # training runs under B's key only: A decrypts nothing, B one output per step here
    assert g.keys.decryptions == 0 and h.keys.decryptions == 4


def test_released_decryptions_are_rounded() -> None:
    """threats.md row 27: what a key holder returns is rounded to 2**-round_bits."""
    _, _, g, h = _pair()
    gf = g.on_host_forward(h.begin_step(0, 0))
    hb = h.on_guest_forward(gf)
    q = 2.0**CKKS.round_bits
    for released in (hb.t_sum, hb.s_phi_sum):
        assert np.array_equal(released * q, np.round(released * q))
        assert np.abs(released).max() > 1.0  # masked: far from the small true aggregates


def test_key_rotation_at_decryption_budget() -> None:
    """threats.md row 27: keys rotate at the budget and training is unaffected."""
    small = dataclasses.replace(CKKS, max_decryptions=3)
    t, p, g, h = _pair(ckks=small)
    losses = [_step(g, h, e, s) for e in range(p.epochs) for s in range(h.steps(e))]
    assert h.rotations >= 1 and h.keys.decryptions <= 3
    assert g.rotations == 0 and g.keys.decryptions == 0  # A's key serves prediction only
    ref: list[float] = []
    train_plaintext(t.guest, t.host, p, on_step=lambda e, s, v: ref.append(v))
    assert np.abs(np.array(losses) - np.array(ref)).max() < 1e-6


def test_context_sent_to_peer_has_no_secret_key() -> None:
    """threats.md row 28."""
    _, _, g, h = _pair()
    for hello in (g.hello(), h.hello()):
        ctx = ts.context_from(hello.context)
        assert not ctx.is_private() and not ctx.has_secret_key()


@pytest.mark.parametrize(("side", "table"), [("guest", GUEST_TRANSITIONS),
                                              ("host", HOST_TRANSITIONS)])
def test_methods_out_of_order_are_refused(side: str, table: dict) -> None:
    t = toy()
    p = small_params()
    sm = FtlGuest(t.guest, p, ckks=CKKS) if side == "guest" else FtlHost(t.host, p, ckks=CKKS)
    for method, allowed in table.items():
        if Stage.NEW in allowed:
            continue
        with pytest.raises(LocalProtocolError, match=method):
            fn = getattr(sm, method)
            fn(*([0] * len(inspect.signature(fn).parameters)))


def test_wrong_shapes_and_steps_are_refused() -> None:
    _, _, g, h = _pair()
    gf = g.on_host_forward(h.begin_step(0, 0))
    hb = h.on_guest_forward(gf)
    bad = dataclasses.replace(hb, t_sum=hb.t_sum[:, :-1])
    with pytest.raises(RemoteProtocolError, match="t_sum"):
        g.on_host_backward(bad)
    _, _, g2, h2 = _pair()
    hf = h2.begin_step(0, 0)
    gf2 = g2.on_host_forward(hf)
    with pytest.raises(RemoteProtocolError, match="step"):
        h2.on_guest_forward(dataclasses.replace(gf2, step=1))


def test_foreign_key_and_forged_ciphertexts_are_refused() -> None:
    _, _, g, h = _pair()
    hf = h.begin_step(0, 0)
    with pytest.raises(KeyMismatch):
        g.on_host_forward(dataclasses.replace(hf, key_id="0" * 16))
    # ciphertexts made under another key but labelled with the right id: the key holder's
    # decryption lands far outside the mask range and is refused
    other = CkksKeys(CKKS)
    k_b = h.model.width
    forged = dataclasses.replace(hf, x=he.encrypt_many(
        other, [np.ones((20, 4)), np.ones((4, 4)), np.ones((20, k_b)), np.ones((4, k_b))],
        [g.model.width + 1, 1, 4, 4]))
    gf = g.on_host_forward(forged)
    with pytest.raises(DecryptionRangeError):
        h.on_guest_forward(gf)


def test_mismatched_ckks_parameters_are_refused() -> None:
    t = toy()
    p = small_params()
    g = FtlGuest(t.guest, p, ckks=CKKS)
    other = CkksParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 60))
    h = FtlHost(t.host, p, ckks=other)
    with pytest.raises(RemoteProtocolError, match="CKKS parameters differ"):
        g.on_hello(h.hello())


def test_hello_checks_roles_parameters_and_overlap() -> None:
    t = toy()
    p = small_params()
    g1, g2 = FtlGuest(t.guest, p, ckks=CKKS), FtlGuest(t.guest, p, ckks=CKKS)
    with pytest.raises(ConfigError, match="labels on the wrong side"):
        g1.on_hello(g2.hello())
    h = FtlHost(t.host, dataclasses.replace(p, dim=5), ckks=CKKS)
    with pytest.raises(ConfigError, match="dim"):
        FtlGuest(t.guest, p, ckks=CKKS).on_hello(h.hello())
    t2 = toy(n_overlap=30)
    h2 = FtlHost(t2.host, p, ckks=CKKS)
    with pytest.raises(ConfigError, match="overlap sizes differ"):
        FtlGuest(t.guest, p, ckks=CKKS).on_hello(h2.hello())
    tiny = small_params(batch_size=4)
    with pytest.raises(ConfigError, match="too small"):
        FtlGuest(t.guest, tiny, ckks=CKKS).on_hello(FtlHost(t.host, tiny, ckks=CKKS).hello())


# ---------------------------------------------------------------- the CKKS product alone


def test_layout_is_exact_without_encryption() -> None:
    rng = np.random.default_rng(0)
    for rows, m, k in [(1, 1, 1), (20, 4, 9), (300, 8, 3), (3000, 4, 5), (8, 8, 700)]:
        x, p = rng.normal(size=(rows, m)), rng.normal(size=(rows, k))
        lay = he.Layout(rows, m, 4096)
        packed = lay.pack(x)
        sums = [lay.block_sums((packed * lay.weights(p, q)).sum(axis=0))
                for q in range(lay.outputs(k))]
        np.testing.assert_allclose(lay.assemble(sums, k), x.T @ p, atol=1e-9)


def test_ckks_product_worst_case_grid_and_chunking() -> None:
    """threats.md rows 25 and 29: extreme values on a grid; rows beyond one ciphertext."""
    keys = CkksKeys(CKKS)
    peer = load_public(keys.public, CKKS)
    rng = np.random.default_rng(3)
    rows, m, k = 2100, 4, 3  # 2100 rows > 1024-row blocks: 3 chunks
    signs = np.where(np.indices((rows, m)).sum(axis=0) % 2 == 0, 1.0, -1.0)
    x = 8.0 * signs                  # |X| at the value bound everywhere
    p = 5.0 * np.where(rng.random((rows, k)) < 0.5, 1.0, -1.0)
    blobs = he.encrypt(keys, x)
    assert len(blobs) == he.Layout(rows, m, CKKS.slots).chunks == 3
    prod, mask = he.masked_product(peer, blobs, rows, m, p, rng, peer_name="t")
    got = he.decrypt_sums(keys, prod, rows, m, k, rng, peer_name="t") - mask
    err = np.abs(got - x.T @ p).max()
    assert err < 1e-4, err


def test_values_beyond_ckks_range_give_a_clear_error() -> None:
    """threats.md row 26: refuse before SEAL's 'scale out of bounds' or a wrong decryption."""
    with pytest.raises(HeError, match="range budget"):
        he.check_range(CKKS, np.full((3, 2), 1e4), np.full((3, 1), 1e3), "test")


@pytest.mark.parametrize("shapes", [[(20, 4), (4, 4)], [(100, 8), (8, 8)], [(3000, 4), (4, 4)]])
def test_packing_of_several_matrices(shapes: list[tuple[int, int]]) -> None:
    """Combined packing (small batches) and the chunked fallback give the same products."""
    rng = np.random.default_rng(5)
    ks = [9, 3]
    xs = [rng.normal(size=s) for s in shapes]
    ps = [rng.normal(size=(s[0], k)) for s, k in zip(shapes, ks, strict=True)]
    pk = he.Packing(shapes, ks, CKKS.slots)
    assert pk.combined == (shapes[0][0] < 1000)
    if pk.combined:  # the layout alone, without encryption
        v = pk.pack(xs)
        sums = pk.assemble([pk.block_sums(v * pk.weights(ps, q)) for q in range(pk.n_out)])
        for x, p, got in zip(xs, ps, sums, strict=True):
            np.testing.assert_allclose(got, x.T @ p, atol=1e-9)
    keys = CkksKeys(CKKS)
    peer = load_public(keys.public, CKKS)
    blobs = he.encrypt_many(keys, xs, ks)
    assert len(blobs) == pk.n_in
    prod, masks = he.masked_product_many(peer, blobs, shapes, ps, rng, peer_name="t")
    released = he.decrypt_many(keys, prod, shapes, ks, rng, peer_name="t")
    for x, p, g, m in zip(xs, ps, released, masks, strict=True):
        np.testing.assert_allclose(g - m, x.T @ p, atol=1e-5)


@pytest.mark.parametrize("rows", [40, 3000])  # one combined ciphertext; chunked layout
def test_open_blocks_give_exact_sums_but_masked_slots(rows: int) -> None:
    """Products whose sums the key owner may learn (B's own gradient, Cᵀb): every decrypted
    slot is masked (the per-row products would reveal the peer's plaintext row by row),
    yet the block sums are XᵀP, with no mask sums to remove."""
    rng = np.random.default_rng(7)
    shapes = [(rows, 2), (rows, 5)]
    xs = [rng.uniform(-1, 1, size=s) for s in shapes]
    ps = [rng.uniform(-1, 1, size=(rows, 3)), rng.uniform(-1, 1, size=(rows, 2))]
    ks = [3, 2]
    keys = CkksKeys(CKKS)
    peer = load_public(keys.public, CKKS)
    blobs = he.encrypt_many(keys, xs, ks)
    prod, masks = he.masked_product_many(peer, blobs, shapes, ps, rng, peer_name="t",
                                         open_blocks=[False, True])
    assert np.abs(masks[0]).max() > 100 and not masks[1].any()
    released = he.decrypt_many(keys, prod, shapes, ks, rng, peer_name="t")
    np.testing.assert_allclose(released[0] - masks[0], xs[0].T @ ps[0], atol=1e-4)
    np.testing.assert_allclose(released[1], xs[1].T @ ps[1], atol=1e-4)
    # what the key owner sees slot by slot: nothing near the products |x·p| ≤ 1
    raw = np.concatenate([keys.decrypt(keys.load_ciphertext(b, level="last")) for b in prod])
    assert np.median(np.abs(raw)) > 1000


def test_zero_sum_masks() -> None:
    m = he.zero_sum_mask(np.random.default_rng(0), 2.0**14, 6, 32).reshape(6, 32)
    np.testing.assert_allclose(m.sum(axis=1), 0.0, atol=1e-9)
    assert np.abs(m).max() <= 2.0**15 and np.median(np.abs(m)) > 2.0**11
