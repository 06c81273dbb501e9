"""CKKS key pairs, the peer's public view, and ciphertext (de)serialization.

Each party makes its own :class:`CkksKeys` (secret key never leaves it) and sends
the peer only :func:`public_bytes`: the parameters and the public key, asserted
free of any secret key (threats.md row 28). The peer turns those bytes into a
:class:`CkksPeer` with :func:`load_public`, which refuses other parameters, an
oversized blob or a context that holds a secret key. Every ciphertext from a peer
is size-, header- and level-checked before SEAL parses it
(:meth:`load_ciphertext`); every decryption is counted against the key's budget and
range-checked (a tampered ciphertext or a wrong key decrypts out of range).

TenSEAL's high-level vectors are too slow for these protocols, so this module
drives SEAL through ``tenseal.sealapi`` directly: one ciphertext per slot vector,
only ciphertext × plaintext products (one multiplicative level, no
relinearisation or Galois keys).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import tempfile
import threading
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as seal

from he.params import CkksParams, DecryptionLimit, DecryptionRangeError, HeError
from party.errors import CodecError, ConfigError, RemoteProtocolError

#: The first bytes of a serialized SEAL object.
_SEAL_MAGIC = b"\x5e\xa1"


def _tmpdir() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="tessera-he-", dir=base)


class _Engine:
    """SEAL objects shared by a key owner and a peer view (not thread-safe; one per thread)."""

    def __init__(self, params: CkksParams, tctx: ts.Context) -> None:
        self.params = params
        self.tctx = tctx
        self.sctx: Any = tctx.seal_context().data
        self.encoder = seal.CKKSEncoder(self.sctx)
        self.evaluator = seal.Evaluator(self.sctx)
        self.encryptor = seal.Encryptor(self.sctx, tctx.public_key().data)
        self.top_parms = self.sctx.first_parms_id()
        self.last_parms = self.sctx.last_parms_id()
        self._dir = _tmpdir()
        self._lock = threading.Lock()
        self._finalizer_dir = self._dir

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_finalizer_dir", ""), ignore_errors=True)

    # -- encoding ---------------------------------------------------------
    def encode(self, values: np.ndarray, *, parms: Any = None, scale: float | None = None) -> Any:
        """Encode a slot vector; a constant vector takes SEAL's fast scalar path (no FFT)."""
        pt = seal.Plaintext()
        v = np.asarray(values, dtype=np.float64)
        parms = parms if parms is not None else self.top_parms
        scale = scale if scale is not None else self.params.scale
        if v.size and v[0] == v[-1] and (v == v[0]).all():
            self.encoder.encode(float(v[0]), parms, scale, pt)
        else:
            self.encoder.encode(v.tolist(), parms, scale, pt)
        return pt

    # -- serialization (sealapi only saves to paths) ------------------------
    def save(self, obj: Any) -> bytes:
        with self._lock:
            path = os.path.join(self._dir, "out.bin")
            obj.save(path)
            with open(path, "rb") as f:
                return f.read()

    def load_ciphertext(self, data: bytes, *, level: str) -> Any:
        """Deserialize a peer's ciphertext after checking its size, header and level."""
        limit = self.params.max_ciphertext_bytes()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"ciphertext must be bytes, got {type(data).__name__}")
        if len(data) > limit:
            raise CodecError(f"ciphertext of {len(data)} bytes exceeds the {limit}-byte limit")
        if len(data) < 16 or bytes(data[:2]) != _SEAL_MAGIC:
            raise CodecError("not a SEAL ciphertext (bad header)")
        (declared,) = struct.unpack_from("<Q", data, 8)
        if declared != len(data):
            raise CodecError(
                f"ciphertext header declares {declared} bytes but {len(data)} arrived (truncated?)"
            )
        ct = seal.Ciphertext()
        with self._lock:
            path = os.path.join(self._dir, "in.bin")
            with open(path, "wb") as f:
                f.write(data)
            try:
                ct.load(self.sctx, path)
            except Exception as e:  # SEAL raises plain RuntimeError/ValueError
                raise CodecError(f"ciphertext rejected by SEAL: {e}") from None
        want = self.top_parms if level == "top" else self.last_parms
        if ct.size() != 2 or list(ct.parms_id()) != list(want) or not ct.is_ntt_form():
            raise CodecError(
                f"ciphertext has the wrong shape or level (size {ct.size()}, expected level {level})"
            )
        return ct

    def new_ct(self) -> Any:
        return seal.Ciphertext()


class CkksKeys(_Engine):
    """A key pair owned by one party; decrypts and counts its decryptions."""

    def __init__(self, params: CkksParams | None = None) -> None:
        params = params or CkksParams()
        tctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        )
        tctx.global_scale = params.scale
        if not tctx.seal_context().data.parameters_set():
            raise ConfigError(f"SEAL refused the CKKS parameters {params}")
        super().__init__(params, tctx)
        self.encryptor.set_secret_key(tctx.secret_key().data)
        self.decryptor = seal.Decryptor(self.sctx, tctx.secret_key().data)
        self.public = public_bytes(tctx)
        self.key_id = key_id_of(self.public)
        self.decryptions = 0

    def encrypt_symmetric(self, values: np.ndarray) -> bytes:
        """Encrypt one slot vector under our secret key; seeded, so about half the size."""
        ser = self.encryptor.encrypt_symmetric(self.encode(values))
        return self.save(ser)

    def decrypt(self, ct: Any) -> np.ndarray:
        """Decrypt one ciphertext; refuses past the key's decryption budget or out of range."""
        if self.decryptions >= self.params.max_decryptions:
            raise DecryptionLimit(
                f"key {self.key_id} used for {self.decryptions} decryptions "
                f"(limit {self.params.max_decryptions}); rotate the key"
            )
        self.decryptions += 1
        pt = seal.Plaintext()
        self.decryptor.decrypt(ct, pt)
        v = np.asarray(self.encoder.decode_double(pt), dtype=np.float64)
        worst = float(np.max(np.abs(v))) if v.size else 0.0
        if not math.isfinite(worst) or worst > self.params.range_limit:
            raise DecryptionRangeError(
                f"decrypted values out of range (max |v| = {worst:.3g} > "
                f"{self.params.range_limit:g}): the ciphertext was tampered with or "
                "made under another key"
            )
        return v

    @property
    def needs_rotation(self) -> bool:
        return self.decryptions >= self.params.max_decryptions


class CkksPeer(_Engine):
    """The peer's public context: encrypt (for masks) and compute, never decrypt."""

    def __init__(self, params: CkksParams, tctx: ts.Context, key_id: str) -> None:
        super().__init__(params, tctx)
        self.key_id = key_id

    def encrypt_mask(self, values: np.ndarray, *, scale: float) -> Any:
        """Public-key encryption at the last level: masks and re-randomizes a result."""
        ct = seal.Ciphertext()
        self.encryptor.encrypt(self.encode(values, parms=self.last_parms, scale=scale), ct)
        return ct


def key_id_of(public: bytes) -> str:
    """A short fingerprint of a public context, named in messages and errors."""
    return hashlib.sha256(public).hexdigest()[:16]


def public_bytes(ctx: ts.Context) -> bytes:
    """Serialize ``ctx`` without its secret key, for sending to the peer."""
    pub = ctx.copy()
    pub.make_context_public()
    data = pub.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                         save_relin_keys=False)
    check = ts.context_from(data)
    if check.is_private() or check.has_secret_key():
        raise HeError("refusing to send a context that holds a secret key")
    return bytes(data)


def load_public(data: bytes, params: CkksParams, *, peer: str = "peer") -> CkksPeer:
    """Load a peer's public context, refusing secret keys and unexpected parameters."""
    limit = params.max_context_bytes()
    if not isinstance(data, (bytes, bytearray)):
        raise CodecError(f"public context from {peer} must be bytes", peer=peer)
    if len(data) > limit:
        raise CodecError(f"public context of {len(data)} bytes exceeds {limit}", peer=peer)
    try:
        tctx = ts.context_from(bytes(data))
    except Exception as e:
        raise CodecError(f"public context rejected: {e}", peer=peer) from None
    if tctx.is_private() or tctx.has_secret_key():
        raise RemoteProtocolError("sent a context that holds its secret key", peer=peer)
    if not tctx.has_public_key():
        raise RemoteProtocolError("sent a context without a public key", peer=peer)
    cd = tctx.seal_context().data.key_context_data().parms()
    n = cd.poly_modulus_degree()
    bits = tuple(m.bit_count() for m in cd.coeff_modulus())
    if n != params.poly_modulus_degree or bits != params.coeff_mod_bit_sizes:
        raise RemoteProtocolError(
            f"CKKS parameters differ: peer uses N={n} {list(bits)}, we expect "
            f"N={params.poly_modulus_degree} {list(params.coeff_mod_bit_sizes)}",
            peer=peer,
        )
    tctx.global_scale = params.scale
    return CkksPeer(params, tctx, key_id_of(bytes(data)))


__all__ = [
    "CkksKeys",
    "CkksPeer",
    "key_id_of",
    "load_public",
    "public_bytes",
]
