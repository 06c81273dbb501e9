"""The homomorphic building blocks both CKKS protocols use, and what they protect.

* :func:`masked_dot` is the one product kernel: ``Σ_c Enc(x_c) ⊗ w_c``, rescaled
  once, plus a fresh public-key encryption of a mask chosen by the party that
  computes it. The key owner decrypts only masked slots, and the added encryption
  re-randomises the product, so the key owner cannot divide out the randomness of
  its own ciphertexts to recover the plaintext factors ``w_c``. The CKKS noise of
  the product is not flooded (statistical circuit privacy would cost about 40 more
  modulus bits); it sits below the slot masks and the rounding of :func:`release`.
* :func:`release` noise-floods and rounds every decryption before it goes back to
  the peer (Li–Micciancio IND-CPA^D; threats.md row 27): the peer learns the
  masked value to ``2**-round_bits``, not the low bits that carry the noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from he.keys import CkksPeer
from he.params import CkksParams

FloatArray = npt.NDArray[np.float64]


def release(v: FloatArray, params: CkksParams, rng: np.random.Generator) -> FloatArray:
    """Noise-flood then round a decryption before it goes back to the peer (IND-CPA^D)."""
    q = float(2**params.round_bits)
    if params.flood_sigma > 0:
        v = v + rng.normal(0.0, params.flood_sigma, size=v.shape)
    return np.asarray(np.round(v * q) / q, dtype=np.float64)


def rescaled_scale(eng: CkksPeer) -> float:
    """The scale of a product after one rescale (scale² / the multiplication prime)."""
    q1 = eng.sctx.first_context_data().parms().coeff_modulus()[-1].value()
    return float(eng.params.scale) ** 2 / float(q1)


def masked_dot(eng: CkksPeer, cts: list[Any], weights: FloatArray, mask: FloatArray) -> bytes:
    """Serialized ``Σ_c cts[c] ⊗ weights[c]``, rescaled, ``+ Enc(mask)`` under the peer's key.

    ``weights`` holds one plaintext slot vector per ciphertext. Products with an
    all-zero plaintext are skipped (SEAL refuses products that are identically
    zero); if all are zero the result is the encrypted mask alone, at the scale a
    product would have had.
    """
    ev = eng.evaluator
    acc = None
    for c, ct in enumerate(cts):
        if not weights[c].any():
            continue
        tmp = eng.new_ct()
        ev.multiply_plain(ct, eng.encode(weights[c]), tmp)
        if acc is None:
            acc = tmp
        else:
            ev.add_inplace(acc, tmp)
    if acc is None:
        return eng.save(eng.encrypt_mask(mask, scale=rescaled_scale(eng)))
    ev.rescale_to_next_inplace(acc)
    ev.add_inplace(acc, eng.encrypt_mask(mask, scale=acc.scale))
    return eng.save(acc)


__all__ = ["masked_dot", "release", "rescaled_scale"]
