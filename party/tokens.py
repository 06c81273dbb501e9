"""Join tokens and the deny list: what a CA directory keeps for enrollment.

A token ``tsr1.<id>.<secret>.<CA fingerprint>`` is issued for one party name with an
expiry of at most :data:`MAX_TTL_S` (:meth:`TokenStore.issue`). ``tokens.json``
(0600) keeps only the SHA-256 of each secret, compared in constant time on redeem;
it is rewritten atomically under a lock, so of two enrollments racing for one token
only one can spend it. A token for another name than the one claimed is refused
without being spent. The deny list (:class:`DenyList`, ``revoked.json``) revokes a
party name (every certificate and token for it) or one certificate serial.

How these fit the enrollment protocol is in :mod:`party.enroll`, which re-exports
every name here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from party.ca import ISSUED, load_ca, locked, read_json
from party.config import check_party_name
from party.errors import AuthenticationError, ConfigError
from party.files import write_atomic

TOKEN_PREFIX = "tsr1"
TOKENS = "tokens.json"
REVOKED = "revoked.json"
#: The longest a token may live (a join token is a bootstrap secret, not a credential).
MAX_TTL_S = 7 * 24 * 3600.0
_TOKEN = re.compile(r"^tsr1\.([0-9a-f]{8})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")


def ca_fingerprint(ca_pem: bytes) -> str:
    """The CA certificate's SHA-256 over its DER encoding, base64url without padding."""
    try:
        der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    except ValueError as e:
        raise ConfigError(f"not a PEM certificate ({e})") from None
    return _fp_der(der)


def _fp_der(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class JoinToken:
    """A parsed token: ``tsr1.<id>.<secret>.<CA fingerprint>``."""

    id: str
    secret: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}.{self.id}.{self.secret}.{self.fingerprint}"


def parse_token(token: str) -> JoinToken:
    """ConfigError unless ``token`` is a well-formed join token."""
    m = _TOKEN.match(token.strip()) if isinstance(token, str) else None
    if m is None:
        raise ConfigError(
            "malformed join token: expected tsr1.<8 hex>.<22 chars>.<43 chars> "
            "(as printed by `python -m party.certs token`)"
        )
    return JoinToken(*m.groups())


def parse_ttl(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``2d`` or a number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if m is None:
        raise ConfigError(f"--ttl: {text!r} is not a duration such as 90s, 15m, 1h or 2d")
    ttl = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < ttl <= MAX_TTL_S:
        raise ConfigError(f"--ttl: {text!r} must be more than 0 and at most 7 days")
    return ttl


class TokenStore:
    """The one-time tokens of one CA directory (``tokens.json``, 0600, written atomically
    under a lock, so two enrollments racing for one token cannot both win)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / TOKENS

    def issue(self, party: str, ttl_s: float, *, now: float | None = None,
              allowed: list[str] | None = None) -> str:
        """A new token for ``party`` valid ``ttl_s`` seconds; ``allowed``: the federation's
        parties (ConfigError if ``party`` is not one of them)."""
        check_party_name(party, "--party")
        if allowed is not None and party not in allowed:
            raise ConfigError(f"--party: {party!r} is not a party of the federation "
                              f"(known: {', '.join(sorted(allowed))}); add [parties.{party}] first")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ConfigError(f"token ttl {ttl_s:g} s: must be more than 0 and at most 7 days")
        why = DenyList(self.directory).denies(party, None)
        if why:
            raise ConfigError(f"--party: {party!r} is revoked ({why}); undo that first "
                              f"(python -m party.certs revoke --party {party} --undo)")
        _key, ca = load_ca(self.directory)
        fp = _fp_der(ca.public_bytes(serialization.Encoding.DER))
        now = time.time() if now is None else now
        tok = JoinToken(secrets.token_hex(4), secrets.token_urlsafe(16), fp)
        with locked(self.directory / ".tokens.lock"):
            data = read_json(self.path)
            toks = data.setdefault("tokens", {})
            # forget tokens spent or expired more than a day ago: the file stays small
            for tid in [t for t, v in toks.items() if v.get("expires", 0) < now - 86400]:
                del toks[tid]
            toks[tok.id] = {"party": party, "secret_sha256": _hash_secret(tok.secret),
                            "created": now, "expires": now + ttl_s, "used": None}
            write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True), mode=0o600)
        return str(tok)

    def redeem(self, token_id: str, secret: str, claim: str | None, *,
               now: float | None = None) -> str:
        """Spend the token and return its party name; AuthenticationError naming why not.

        ``claim``: the party name the requester asks for (None: the token's). A token
        for another name is refused without being spent (the holder may have mistyped).
        """
        now = time.time() if now is None else now
        with locked(self.directory / ".tokens.lock"):
            data = read_json(self.path)
            entry = data.get("tokens", {}).get(token_id)
            if not isinstance(entry, dict) or not hmac.compare_digest(
                    str(entry.get("secret_sha256", "")), _hash_secret(secret)):
                raise AuthenticationError("unknown join token (never issued here, or its secret "
                                          "is wrong)")
            party = str(entry["party"])
            if entry.get("used") is not None:
                raise AuthenticationError(
                    f"join token {token_id} was already used (at {time.ctime(entry['used'])}); "
                    "tokens are single-use: ask for a new one")
            if now >= float(entry["expires"]):
                raise AuthenticationError(
                    f"join token {token_id} expired at {time.ctime(entry['expires'])}; ask for a new one")
            if claim is not None and claim != party:
                raise AuthenticationError(
                    f"join token {token_id} is bound to party {party!r}, not {claim!r}")
            why = DenyList(self.directory).denies(party, None)
            if why:
                raise AuthenticationError(f"party {party!r} is revoked ({why})")
            entry["used"] = now
            write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True), mode=0o600)
        return party

    def reserved(self, *, now: float | None = None) -> set[str]:
        """Party names of tokens that are neither spent nor expired."""
        now = time.time() if now is None else now
        return {str(v["party"]) for v in read_json(self.path).get("tokens", {}).values()
                if v.get("used") is None and float(v.get("expires", 0)) > now}


class DenyList:
    """Revoked party names and certificate serials (``revoked.json`` beside the CA).

    A revoked *name* refuses every certificate with that common name and every token
    for it; a revoked *serial* refuses one certificate (a lost key: the party may
    join again with a new token). Reads are cached by the file's inode, mtime and size.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / REVOKED
        self._stamp: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()  # the router's threads share one DenyList

    def _load(self) -> dict[str, Any]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._data = None, {}
                return self._data
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # a write is a new file (atomic rename)
            if stamp != self._stamp:
                self._data = read_json(self.path)
                self._stamp = stamp
            return self._data

    def stamp(self) -> tuple[int, int, int] | None:
        self._load()
        return self._stamp

    def denies(self, name: str, serial: int | None) -> str | None:
        """Why a certificate for ``name`` with ``serial`` is refused, or None."""
        data = self._load()
        entry = data.get("parties", {}).get(name)
        if entry is not None:
            return f"party revoked: {entry.get('reason') or 'no reason given'}"
        if serial is not None:
            entry = data.get("serials", {}).get(format(serial, "x"))
            if entry is not None:
                return f"certificate {serial:x} revoked: {entry.get('reason') or 'no reason given'}"
        return None

    def _update(self, fn: Any) -> None:
        with locked(self.directory / ".revoked.lock"):
            data = read_json(self.path)
            fn(data)
            write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True), mode=0o644)

    def revoke_party(self, name: str, reason: str = "") -> None:
        self._update(lambda d: d.setdefault("parties", {}).__setitem__(
            name, {"at": time.time(), "reason": reason}))

    def unrevoke_party(self, name: str) -> None:
        self._update(lambda d: d.setdefault("parties", {}).pop(name, None))

    def revoke_serials(self, serials: list[int], reason: str = "") -> None:
        def upd(d: dict[str, Any]) -> None:
            for s in serials:
                d.setdefault("serials", {})[format(s, "x")] = {"at": time.time(), "reason": reason}
        self._update(upd)


def revoke(directory: str | Path, *, party: str | None = None, cert: str | Path | None = None,
           serial: str | None = None, reason: str = "", undo: bool = False) -> str:
    """What ``python -m party.certs revoke`` does; returns a one-line summary."""
    deny = DenyList(directory)
    if party and undo:
        deny.unrevoke_party(party)
        return f"party {party!r} is no longer revoked (its unexpired certificates are valid again)"
    if party:
        deny.revoke_party(party, reason)
        return f"revoked party {party!r}: every certificate and token for it is refused"
    serials: list[int] = []
    if cert:
        try:
            serials.append(x509.load_pem_x509_certificate(Path(cert).read_bytes()).serial_number)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--cert: cannot read a PEM certificate from {cert} ({e})") from None
    if serial:
        try:
            serials.append(int(serial, 16))
        except ValueError:
            raise ConfigError(f"--serial: {serial!r} is not a hexadecimal serial") from None
    if not serials:
        raise ConfigError("revoke needs --party, --cert or --serial")
    deny.revoke_serials(serials, reason)
    return f"revoked certificate(s) {', '.join(format(s, 'x') for s in serials)}"


def token_parties(directory: str | Path) -> set[str]:
    """Parties that joined (or may join) with a token: never claimed by local dev clients."""
    d = Path(directory)
    joined = {str(v.get("party")) for v in read_json(d / ISSUED).get("certs", {}).values()
              if v.get("via") == "token"}
    return joined | TokenStore(d).reserved()

