"""Join tokens, certificate enrollment over gRPC, and the deny list.

The trust model (what each step trusts) is in the docstring of :mod:`party.certs`.
In short, ``kubeadm join`` style:

1. the CA holder issues a one-time token (:meth:`TokenStore.issue`) bound to one
   party name, with an expiry; the token carries the CA certificate's SHA-256
   fingerprint, and the store keeps only a hash of its secret;
2. the joining party fetches the enrollment endpoint's certificate chain over TLS
   *without* verifying it (:func:`fetch_ca`) and keeps the CA certificate only if
   its fingerprint equals the token's;
3. it opens a TLS channel verified against that CA (server name ``router``) and
   sends the token and a CSR for a key made on its own machine (:func:`join`);
4. the router checks the token (known, secret, not expired, not spent, bound to
   this party name, the name not revoked), spends it atomically, and signs a
   certificate for the token's party name and the CSR's public key only;
5. from then on the party connects with mutual TLS like any other.

The router checks its deny list (:class:`DenyList`, ``revoked.json`` beside the CA)
on every connection and drops a live link within a second of a revocation.

This module holds the enrollment endpoint (router side) and the joining side; the
tokens and the deny list themselves (steps 1 and 4's checks, ``tokens.json`` and
``revoked.json``) are in :mod:`party.tokens`, whose names are re-exported here.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from party.ca import load_ca, record_issued, sign_public_key
from party.codec import decode, encode
from party.config import FederationConfig, check_party_name
from party.errors import (
    AuthenticationError,
    CodecError,
    ConfigError,
    PartyUnavailable,
)
from party.files import read_tls, write_atomic
from party.grpc_server import bind_server

# party.tokens: used here, and the rest re-exported (defined here before the split)
from party.tokens import _TOKEN as _TOKEN
from party.tokens import MAX_TTL_S as MAX_TTL_S
from party.tokens import REVOKED as REVOKED
from party.tokens import TOKEN_PREFIX as TOKEN_PREFIX
from party.tokens import TOKENS as TOKENS
from party.tokens import DenyList as DenyList
from party.tokens import JoinToken as JoinToken
from party.tokens import TokenStore, _fp_der, ca_fingerprint, parse_token
from party.tokens import _hash_secret as _hash_secret
from party.tokens import parse_ttl as parse_ttl
from party.tokens import revoke as revoke
from party.tokens import token_parties as token_parties

log = logging.getLogger("party.enroll")

ENROLL_METHOD = "/tessera.Enroll/Join"


def peer_serial(context: grpc.ServicerContext) -> int | None:
    """The serial of the verified client certificate of a gRPC call (None if absent)."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(pems[0]).serial_number
    except ValueError:
        return None


# -- the enrollment endpoint (router side) ----------------------------------------------------

class EnrollmentServer:
    """Serves ``/tessera.Enroll/Join`` over server-only TLS (the requester has no
    certificate yet), presenting the router certificate followed by the CA certificate.

    It signs with the CA key in ``config.tls.ca``'s directory, which also holds the
    token store and the deny list.
    """

    def __init__(self, config: FederationConfig, listen: str) -> None:
        self.config = config
        self.listen = listen
        self.directory = config.tls.ca.parent
        self.tokens = TokenStore(self.directory)
        self._server: grpc.Server | None = None
        self.port: int | None = None
        self._lock = threading.Lock()

    def start(self) -> EnrollmentServer:
        tls = self.config.tls
        chain = read_tls(tls.router_cert, "[tls].router_cert").rstrip(b"\n") + b"\n" + read_tls(
            tls.ca, "[tls].ca")
        load_ca(self.directory)  # fail now, not at the first join, if the CA key is missing
        creds = grpc.ssl_server_credentials(
            [(read_tls(tls.router_key, "[tls].router_key"), chain)], require_client_auth=False)
        self._server, self.port = bind_server(
            "tessera.Enroll", {"Join": grpc.unary_unary_rpc_method_handler(self._join)}, self.listen,
            creds, name="enrollment endpoint", workers=2, max_rpcs=8, hint=" (address in use?)")
        self._server.start()
        log.info("enrollment for %r on %s (port %d)", self.config.name, self.listen, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0.5).wait(2)
            self._server = None

    def _join(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return bytes(encode(self.handle(request)))
        except AuthenticationError as e:
            log.warning("refused an enrollment from %s: %s", context.peer(), e)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))
        except (CodecError, ConfigError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        raise AssertionError("unreachable")  # pragma: no cover - context.abort raises

    def handle(self, request: bytes) -> dict[str, Any]:
        """Check one join request and answer it (the whole decision, without a network)."""
        req = decode(request, max_bytes=64 << 10)
        if not isinstance(req, dict) or not {"token_id", "secret", "csr"} <= set(req):
            raise ConfigError("a join request is {token_id, secret, csr[, party]}")
        try:
            csr = x509.load_pem_x509_csr(bytes(req["csr"]))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"the CSR is not PEM ({e})") from None
        if not csr.is_signature_valid:
            raise AuthenticationError("the CSR's signature is invalid (no proof of its key)")
        pub = csr.public_key()
        if not (isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.key_size >= 256) and not (
                isinstance(pub, rsa.RSAPublicKey) and pub.key_size >= 2048):
            raise ConfigError("the CSR's key must be EC P-256 or stronger, or RSA >= 2048")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        claim = str(req.get("party") or (cns[0].value if cns else "")) or None
        with self._lock:
            party = self.tokens.redeem(str(req["token_id"]), str(req["secret"]), claim)
            if party not in self.config.parties:
                raise AuthenticationError(f"party {party!r} is no longer in federation "
                                          f"{self.config.name!r}")
            ca_key, ca_cert = load_ca(self.directory)
            cert = sign_public_key(ca_key, ca_cert, party, pub)
            record_issued(self.directory, party, cert, "token")
        log.info("party %r joined %r with a token (certificate %x)", party, self.config.name,
                 cert.serial_number)
        cfg = self.config
        return {
            "party": party,
            "cert": cert.public_bytes(serialization.Encoding.PEM),
            "ca": ca_cert.public_bytes(serialization.Encoding.PEM),
            "federation": {
                "name": cfg.name, "max_message_mb": cfg.max_message_bytes >> 20,
                "timeout_s": cfg.timeout_s,
                "parties": {p.name: p.role.value for p in cfg.parties.values()},
            },
        }


# -- the joining side ---------------------------------------------------------------------------

def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{address!r} is not a host:port address")
    return host.strip("[]") or "127.0.0.1", int(port)


def enroll_address(server_address: str) -> str:
    """Where a joining party finds the enrollment endpoint: ``$TESSERA_ENROLL_ADDRESS``,
    else the server's host at its port + 1."""
    env = os.environ.get("TESSERA_ENROLL_ADDRESS")
    if env:
        return env
    host, port = _split(server_address)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port + 1}"


def fetch_ca(address: str, fingerprint: str, *, timeout_s: float = 10.0) -> bytes:
    """The CA certificate (PEM) that the endpoint at ``address`` presents, accepted only
    if its SHA-256 fingerprint equals ``fingerprint``.

    The TLS handshake here verifies nothing (we do not know the CA yet); the fingerprint,
    which came with the token out of band, is what makes the certificate trusted.
    """
    host, port = _split(address)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                ctx.wrap_socket(raw, server_hostname="router") as tls:
            getter = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain  # type: ignore[attr-defined]
            chain = getter() or []
    except (OSError, ssl.SSLError) as e:
        raise PartyUnavailable("router", f"no TLS connection to the enrollment endpoint "
                                         f"{address}: {e}") from None
    ders = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
            for c in chain]
    for der in ders:
        if hmac.compare_digest(_fp_der(der), fingerprint):
            return ssl.DER_cert_to_PEM_cert(der).encode()
    seen = ", ".join(_fp_der(d)[:12] + "…" for d in ders) or "none"
    raise AuthenticationError(
        f"the enrollment endpoint {address} does not present the CA of the join token "
        f"(expected fingerprint {fingerprint[:12]}…, got {seen}): a wrong address, another "
        "federation, or a man in the middle; the token was not sent")


@dataclass(frozen=True)
class Enrolled:
    """What a successful join returns: this party's key and certificate, the CA, and the
    federation's public description."""

    party: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    federation: dict[str, Any]


def join(address: str, token: str, *, name: str | None = None, timeout_s: float = 30.0) -> Enrolled:
    """Join the federation whose enrollment endpoint is at ``address`` with ``token``.

    The key is made here and never leaves; the token's secret is sent only over TLS
    verified against the CA the token names.
    """
    tok = parse_token(token)
    if name is not None:
        check_party_name(name)
    ca_pem = fetch_ca(address, tok.fingerprint, timeout_s=timeout_s)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)] if name else [])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    req = encode({"token_id": tok.id, "secret": tok.secret, "party": name,
                  "csr": csr.public_bytes(serialization.Encoding.PEM)})
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(address, creds,
                             options=[("grpc.ssl_target_name_override", "router")]) as ch:
        call = ch.unary_unary(ENROLL_METHOD)
        try:
            raw = call(bytes(req), timeout=timeout_s)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise AuthenticationError(f"enrollment refused: {details}") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise ConfigError(f"enrollment refused: {details}") from None
            raise PartyUnavailable("router", f"enrollment at {address} failed: {code} {details}") from None
    resp = decode(raw, max_bytes=1 << 20)
    if not isinstance(resp, dict) or not {"party", "cert", "ca", "federation"} <= set(resp):
        raise CodecError("malformed enrollment answer")
    cert = x509.load_pem_x509_certificate(bytes(resp["cert"]))
    if cert.public_key() != key.public_key():
        raise AuthenticationError("the enrollment answer's certificate is not for our key")
    if bytes(resp["ca"]).strip() != ca_pem.strip() and ca_fingerprint(bytes(resp["ca"])) != tok.fingerprint:
        raise AuthenticationError("the enrollment answer names another CA")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Enrolled(str(resp["party"]), key_pem, bytes(resp["cert"]), ca_pem,
                    dict(resp["federation"]))


def save_enrolled(enrolled: Enrolled, directory: str | Path, *, router: str) -> Path:
    """Write the key (0600), certificates and a federation TOML under ``directory``;
    returns the TOML's path (load it with :func:`party.config.load_federation`)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    me = enrolled.party
    write_atomic(d / f"{me}.key", enrolled.key_pem, mode=0o600)
    write_atomic(d / f"{me}.pem", enrolled.cert_pem, mode=0o644)
    write_atomic(d / "ca.pem", enrolled.ca_pem, mode=0o644)
    fed = enrolled.federation
    parties = fed.get("parties", {})
    if not isinstance(parties, dict) or me not in parties:
        raise CodecError("the enrollment answer's party list does not name us")
    lines = ["[federation]", f"name = {json.dumps(str(fed.get('name', 'federation')))}",
             f"router = {json.dumps(router)}",
             f"max_message_mb = {int(fed.get('max_message_mb', 1024))}",
             f"timeout_s = {float(fed.get('timeout_s', 120.0))}", "", "[tls]", 'ca = "ca.pem"', ""]
    for p, role in parties.items():
        check_party_name(str(p))
        lines += [f"[parties.{p}]", f"role = {json.dumps(str(role))}", ""]
    write_atomic(d / "federation.toml", "\n".join(lines))
    write_atomic(d / "party", me)
    return d / "federation.toml"
