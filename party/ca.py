"""The CA's primitives: keys, certificates, the registry of what it signed, and the lock.

The certificate machinery behind :mod:`party.certs` (its CLI and the trust model),
:mod:`party.devfed` and :mod:`party.enroll`, in a module of its own so that those
import it without importing each other. Keys are EC P-256, written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from party.config import check_party_name
from party.errors import ConfigError
from party.files import load_json, write_atomic

DEFAULT_ROUTER_HOSTS = ("localhost", "127.0.0.1")
#: The CA directory's registry of the certificates it signed (serial -> party).
ISSUED = "issued.json"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, mode=0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def make_ca(name: str = "tessera-ca", *, days: int = 365) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    hosts: Sequence[str] = (),
    server: bool = False,
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and a certificate for ``common_name`` signed by the CA.

    Party certificates carry the party name as CN and as a DNS SAN, with the
    clientAuth and serverAuth usages: serverAuth lets a party serve a direct
    party-to-party link (spu's PSI link over brpc wants it), and is safe
    because a party's SAN is only its own name, and a party name can never be
    ``localhost``, an IP address or one of the router's ``hosts``. The
    router's certificate carries ``hosts`` and serverAuth only.
    """
    key = _key()
    cert = sign_public_key(ca_key, ca_cert, common_name, key.public_key(), hosts=hosts,
                           server=server, days=days, not_before=not_before)
    return key, cert


def sign_public_key(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    public_key: Any,
    *,
    hosts: Sequence[str] = (),
    server: bool = False,
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate for ``common_name`` and ``public_key`` (e.g. from a CSR), signed by the CA.

    Only the public key is taken from the requester: name, usages and validity are the
    CA's choice (see :func:`make_cert`).
    """
    now = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    sans: list[x509.GeneralName] = []
    for h in [*hosts, common_name]:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    usage = (
        [ExtendedKeyUsageOID.SERVER_AUTH]
        if server
        else [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created 0600) for a read-modify-write."""
    import fcntl

    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} if absent; ConfigError if it is not one."""
    data = load_json(path, lambda e: ConfigError(f"{path}: cannot read ({e})"), missing={})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def record_issued(directory: str | Path, name: str, cert: x509.Certificate, via: str) -> None:
    """Note a certificate the CA in ``directory`` signed (``issued.json``): what
    ``revoke --party`` revokes and what ``token`` will not hand out again."""
    d = Path(directory)
    with locked(d / ".issued.lock"):
        reg = read_json(d / ISSUED)
        reg.setdefault("certs", {})[format(cert.serial_number, "x")] = {
            "party": name, "via": via,
            "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds"),
        }
        write_atomic(d / ISSUED, json.dumps(reg, indent=1, sort_keys=True), mode=0o600)


def load_ca(directory: str | Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA key and certificate under ``directory`` (ca.key, ca.pem)."""
    d = Path(directory)
    try:
        ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    except OSError as e:
        raise ConfigError(f"cannot read the CA in {d}: {e.strerror} ({e.filename})") from None
    except ValueError as e:
        raise ConfigError(f"{d}: ca.key/ca.pem are not a PEM key and certificate ({e})") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{d / 'ca.key'}: not an EC key")
    return ca_key, ca_cert


def init_certs(
    out: str | Path,
    parties: Sequence[str],
    *,
    router_hosts: Sequence[str] = DEFAULT_ROUTER_HOSTS,
    days: int = 365,
    overwrite: bool = False,
) -> Path:
    """Write ca.pem/ca.key, router.pem/router.key and <party>.pem/<party>.key under ``out``."""
    out = Path(out)
    if len(set(parties)) != len(parties) or not parties:
        raise ConfigError(f"--parties: need distinct names, got {list(parties)}")
    for p in parties:
        check_party_name(p, "--parties")
        if p.lower() in {h.lower() for h in router_hosts}:
            raise ConfigError(
                f"--parties: {p!r} is also a router host; a party certificate "
                "must never be valid for a name the router is reached by"
            )
    if (out / "ca.pem").exists() and not overwrite:
        raise ConfigError(f"{out / 'ca.pem'} exists; pass --overwrite to make a new CA")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    ca_key, ca_cert = make_ca(days=days)
    _write_key(out / "ca.key", ca_key)
    _write_cert(out / "ca.pem", ca_cert)
    rkey, rcert = make_cert(ca_key, ca_cert, "router", hosts=router_hosts, server=True, days=days)
    _write_key(out / "router.key", rkey)
    _write_cert(out / "router.pem", rcert)
    for p in parties:
        k, c = make_cert(ca_key, ca_cert, p, days=days)
        _write_key(out / f"{p}.key", k)
        _write_cert(out / f"{p}.pem", c)
        record_issued(out, p, c, "init")
    return out


def add_party(out: str | Path, name: str, *, days: int = 365) -> None:
    """Issue a certificate for a new party with an existing CA (ca.key under ``out``)."""
    out = Path(out)
    check_party_name(name)
    ca_key, ca_cert = load_ca(out)
    k, c = make_cert(ca_key, ca_cert, name, days=days)
    _write_key(out / f"{name}.key", k)
    _write_cert(out / f"{name}.pem", c)
    record_issued(out, name, c, "add")
