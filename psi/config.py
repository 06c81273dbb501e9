"""The settings and the result every PSI protocol shares (ECDH, RR22/KKRT, unbalanced).

:class:`PsiConfig` is what every party of one run must agree on (mode, receiver,
normalisation, salt, chunk size, protocol, join type, phase), checked in the ECDH
hello (:meth:`PsiConfig.public`) and in the run handshake (:meth:`PsiConfig.run_info`);
:class:`ConfigMismatch` names the fields on which a peer differs; :class:`PsiResult`
is what one party learned, whichever protocol ran. The protocols themselves are in
:mod:`psi.protocol` (ECDH, with its security argument), :mod:`psi.spu` and
:mod:`psi.unbalanced`; everything here is importable from :mod:`psi.protocol` too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from party.errors import ConfigError
from psi.group import SUITE
from psi.normalize import NormalizeOptions

PROTOCOL = "tessera-psi/1"
Mode = Literal["both", "one", "cardinality", "unbalanced"]
MODES: tuple[str, ...] = ("both", "one", "cardinality", "unbalanced")
#: The phases of mode "unbalanced" (:mod:`psi.unbalanced`).
Phase = Literal["offline", "online"]
PHASES: tuple[str, ...] = ("offline", "online")
#: The PSI protocols: ECDH (:mod:`psi.protocol`), and spu's RR22 and KKRT (:mod:`psi.spu`).
Protocol = Literal["ecdh", "rr22", "kkrt"]
PROTOCOLS: tuple[str, ...] = ("ecdh", "rr22", "kkrt")
#: What each party's output holds (:mod:`psi.join`).
Join = Literal["inner", "left", "right", "full", "difference"]
JOINS: tuple[str, ...] = ("inner", "left", "right", "full", "difference")
DEFAULT_CHUNK_POINTS = 1 << 16


class ConfigMismatch(ConfigError):
    """A peer runs PSI with another config (salt, normalisation, mode, parties, ...)."""

    def __init__(self, peer: str, fields: dict[str, tuple[Any, Any]]) -> None:
        parts = ", ".join(f"{k}: ours {a!r}, theirs {b!r}" for k, a, b in
                          ((k, v[0], v[1]) for k, v in sorted(fields.items())))
        super().__init__(f"party {peer!r} uses another PSI config ({parts}); both sides must agree")
        self.peer = peer
        self.fields = fields


@dataclass(frozen=True)
class PsiConfig:
    """Settings every party of one PSI run must share (checked in the hello).

    Args:
        mode: ``"both"`` (all learn the intersection), ``"one"`` (only
            ``receiver``), ``"cardinality"`` (all learn only its size), or
            ``"unbalanced"`` (two parties, both learn the intersection: the larger
            party's one-time offline phase, then short online queries; ECDH-OPRF with
            a cache, :mod:`psi.unbalanced`).
        phase: with mode ``"unbalanced"``: ``"offline"`` (build the cache) or
            ``"online"`` (query it; the default).
        receiver: who learns in mode ``"one"`` (default: the first party by name).
        normalize: ID normalisation (see :mod:`psi.normalize`).
        salt: a shared secret or label agreed out of band (optional; fresh
            nonces are mixed in every run anyway).
        chunk_points: points per message (memory per message is 32 × this).
        protocol: ``"ecdh"`` (:mod:`psi.protocol`; any number of parties), ``"rr22"`` or
            ``"kkrt"`` (SecretFlow's OT-based PSI, two parties, :mod:`psi.spu`).
        join: what each party's output holds (:mod:`psi.join`): ``"inner"`` (the
            shared rows), ``"left"``, ``"right"``, ``"full"`` (outer joins, rows the
            party lacks as placeholders) or ``"difference"`` (its rows not shared).
            Other than inner: two parties, mode ``"both"``.
        left: the left party of a left/right/full join (default: the first by name).
    """

    mode: Mode = "both"
    receiver: str | None = None
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)
    salt: bytes = field(default=b"", repr=False)
    chunk_points: int = DEFAULT_CHUNK_POINTS
    protocol: Protocol = "ecdh"
    join: Join = "inner"
    left: str | None = None
    phase: Phase = "online"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.phase not in PHASES:
            raise ConfigError(f"phase must be one of {', '.join(PHASES)}, not {self.phase!r}")
        if self.phase != "online" and self.mode != "unbalanced":
            raise ConfigError(f"phase {self.phase!r} is only meaningful in mode 'unbalanced' "
                              f"(mode is {self.mode!r})")
        if self.mode == "unbalanced" and self.protocol != "ecdh":
            raise ConfigError(f"mode 'unbalanced' runs its own ECDH-OPRF (protocol 'ecdh'), not "
                              f"protocol {self.protocol!r}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.join not in JOINS:
            raise ConfigError(f"join must be one of {', '.join(JOINS)}, not {self.join!r}")
        if self.join != "inner" and self.mode not in ("both", "unbalanced"):
            raise ConfigError(f"join {self.join!r} needs mode 'both' or 'unbalanced' (every party "
                              f"learns the intersection), not mode {self.mode!r}")
        if self.left is not None and self.join not in ("left", "right", "full"):
            raise ConfigError(f"left is only meaningful with join left, right or full (join is {self.join!r})")
        if self.protocol != "ecdh" and self.mode == "cardinality":
            raise ConfigError(f"mode 'cardinality' is only available with protocol 'ecdh' "
                              f"(spu's {self.protocol} reveals the intersection to its receiver)")
        if self.receiver is not None and self.mode != "one":
            raise ConfigError(f"receiver is only meaningful in mode 'one' (mode is {self.mode!r})")
        if not isinstance(self.salt, bytes):
            raise ConfigError("salt must be bytes")
        if not 1 <= self.chunk_points <= 1 << 22:
            raise ConfigError(f"chunk_points must be in 1..{1 << 22}, not {self.chunk_points}")

    def left_party(self, parties: Sequence[str]) -> str | None:
        """The left party of a left/right/full join (None for inner and difference)."""
        if self.join not in ("left", "right", "full"):
            return None
        left = self.left if self.left is not None else sorted(parties)[0]
        if left not in parties:
            raise ConfigError(f"left party {left!r} is not one of the parties {sorted(parties)}")
        return left

    def run_info(self, parties: Sequence[str]) -> dict[str, Any]:
        """What the run handshake compares before any protocol starts (protocol, join, left):
        a peer on another protocol or join type is a RunMismatch naming the field.

        The defaults (ECDH, inner join) add nothing, so an ECDH inner run opens with the
        same handshake as before protocols and joins existed; a field a peer lacks is
        reported as None (= the default)."""
        info: dict[str, Any] = {}
        if self.protocol != "ecdh" or self.join != "inner":
            info["protocol"] = self.protocol
        if self.mode == "unbalanced":
            info["mode"] = self.mode
        if self.join != "inner":
            info["join"] = self.join
            info["left"] = self.left_party(parties)
        return info

    def public(self, parties: Sequence[str]) -> dict[str, Any]:
        """What peers compare (the salt only as a hash)."""
        receiver = self.receiver if self.mode == "one" else None
        if self.mode == "one" and receiver is None:
            receiver = sorted(parties)[0]
        return {
            "protocol": PROTOCOL,
            "group": SUITE.decode(),
            "mode": self.mode,
            "receiver": receiver,
            "parties": sorted(parties),
            "normalize": self.normalize.public(),
            "salt_sha256": hashlib.sha256(b"tessera-psi salt\x00" + self.salt).hexdigest(),
            "chunk_points": self.chunk_points,
        }


@dataclass
class PsiResult:
    """What this party learned.

    ``rows`` are indices into the IDs given to the session, in the agreed
    order (``None`` when this party does not learn the intersection);
    ``size`` is the intersection size (``None`` when this party learns nothing).
    """

    rows: np.ndarray | None
    size: int | None
    own_size: int
    peer_sizes: dict[str, int]
    mode: str
    group_ops: int = 0
    normalize: Any = None  # psi.normalize.NormalizeReport when run_psi normalised the IDs
    worker_peak_rss_mb: float = 0.0  # largest group worker process (0: ran inline)
    run_id: str = ""  # the confirmed run identity (party.handshake), the same at every party
    protocol: str = "ecdh"
    join: str = "inner"  # with another join, rows holds -1 for a placeholder row (psi.join)
    backend: dict[str, Any] = field(default_factory=dict)  # spu: its own counts and seconds


__all__ = ["DEFAULT_CHUNK_POINTS", "JOINS", "MODES", "PHASES", "PROTOCOL", "PROTOCOLS",
           "ConfigMismatch", "Join", "Mode", "Phase", "Protocol", "PsiConfig", "PsiResult"]
