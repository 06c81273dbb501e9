"""CKKS parameters, public contexts and ciphertext checks (threats.md rows 24, 26, 28, 29)."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from party.errors import CodecError, ConfigError, RemoteProtocolError
from vfl.he import packing as pk
from vfl.he.context import HE_STD_128_MAX_LOGQ, CkksKeys, CkksParams, load_public


@pytest.fixture(scope="module")
def keys() -> CkksKeys:
    return CkksKeys(CkksParams())


@pytest.mark.parametrize(
    ("n", "bits"),
    [(8192, (60, 40, 119)), (8192, (60, 60, 60, 40)), (4096, (60, 40, 60)), (2048, (30, 30, 30))],
)
def test_insecure_or_unusable_params_rejected(n: int, bits: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError):
        CkksParams(poly_modulus_degree=n, coeff_mod_bit_sizes=bits, scale_bits=bits[1])


def test_he_standard_limit_is_218_bits_at_8192() -> None:
    assert HE_STD_128_MAX_LOGQ[8192] == 218
    with pytest.raises(ConfigError, match=r"219-bit.*218"):
        CkksParams(coeff_mod_bit_sizes=(60, 40, 119))
    CkksParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 60))  # fine


def test_depth_is_checked_before_seal() -> None:
    # a data prime too small for the mask range = "scale out of bounds" later: refused now
    with pytest.raises(ConfigError, match="depth exhausted"):
        CkksParams(coeff_mod_bit_sizes=(50, 40, 50))


def test_public_context_has_no_secret_key(keys: CkksKeys) -> None:
    ctx = ts.context_from(keys.public)
    assert not ctx.is_private() and not ctx.has_secret_key() and ctx.has_public_key()
    assert len(keys.public) < CkksParams().max_context_bytes()


def test_private_context_from_peer_refused(keys: CkksKeys) -> None:
    private = keys.tctx.serialize(save_secret_key=True)
    with pytest.raises(RemoteProtocolError, match="secret key"):
        load_public(private, CkksParams())


def test_other_parameters_refused(keys: CkksKeys) -> None:
    with pytest.raises(RemoteProtocolError, match="parameters differ"):
        load_public(keys.public, CkksParams(coeff_mod_bit_sizes=(60, 40, 40), scale_bits=40))


def test_ciphertext_checks_before_seal(keys: CkksKeys) -> None:
    peer = load_public(keys.public, CkksParams())
    blob = keys.encrypt_symmetric(np.linspace(-1, 1, keys.params.slots))
    ct = peer.load_ciphertext(blob, level="top")
    assert np.allclose(keys.decrypt(ct), np.linspace(-1, 1, keys.params.slots), atol=1e-6)
    with pytest.raises(CodecError, match="exceeds"):
        peer.load_ciphertext(blob + b"\0" * keys.params.max_ciphertext_bytes(), level="top")
    with pytest.raises(CodecError, match="truncated"):
        peer.load_ciphertext(blob[:-100], level="top")
    with pytest.raises(CodecError, match="header"):
        peer.load_ciphertext(b"\0" * 64, level="top")
    with pytest.raises(CodecError, match="level"):  # one multiplication too many
        peer.load_ciphertext(blob, level="last")


def test_decryption_budget_counts(keys: CkksKeys) -> None:
    k = CkksKeys(CkksParams(max_decryptions=2))
    ct = load_public(k.public, k.params).load_ciphertext(k.encrypt_symmetric(np.zeros(4)), level="top")
    k.decrypt(ct)
    k.decrypt(ct)
    assert k.needs_rotation
    from vfl.he.context import DecryptionLimit

    with pytest.raises(DecryptionLimit):
        k.decrypt(ct)


def test_packing_matches_matrix_products() -> None:
    rng = np.random.default_rng(0)
    slots = 64
    for rows, d, k in [(5, 3, 2), (16, 7, 4), (64, 2, 3), (40, 20, 5)]:
        h, w, delta = rng.normal(size=(rows, d)), rng.normal(size=(d, k)), rng.normal(size=(rows, k))
        cols = pk.pack_cols(h, slots)
        for o in range(k):
            prod = (cols * pk.col_weights(w, rows, slots, o)).sum(axis=0)
            np.testing.assert_allclose(pk.sum_blocks(prod, rows, slots), (h @ w)[:, o])
        r = pk.pack_rows(h, slots)
        for j in range(k):
            prod = (r * pk.row_weights(delta[:, j], d, slots)).sum(axis=0)
            np.testing.assert_allclose(pk.sum_rows(prod, d, slots), (h.T @ delta)[:, j])
    assert [s.stop for s in pk.chunks(9000, 4096)] == [4096, 8192, 9000]
