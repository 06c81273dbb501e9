"""Certificates for a federation: one CA, a router certificate, one certificate per party.

    python -m party.certs init --parties bank,fintech --out certs
    python -m party.certs init --config fed.toml          # parties and paths from the config
    python -m party.certs token --party client_3 --ttl 1h [--config fed.toml]   # a join token
    python -m party.certs revoke --party client_3 | --cert client_3.pem [--config fed.toml]

Keys are EC P-256, written with 0600 permissions. A party's identity is the
common name of its certificate; the router refuses messages whose ``src``
differs from it. The CA key stays with whoever runs ``init`` (in production: an
offline machine); each party needs only ``ca.pem`` and its own pem/key. Without
``--config``/``--out``, ``token`` and ``revoke`` act on this user's development
federation (:mod:`party.devfed`). Every certificate the CA signs is noted in
``issued.json`` (serial, party, how) beside it.

Three ways to get a certificate, and what each trusts
------------------------------------------------------

**Copied files** (``init``/``add``): whoever carries ``<party>.key`` to the party's
machine. The transfer channel must keep the key secret.

**Development federation** (no federation file, :mod:`party.devfed`): trusts the
**local user account**. The CA key sits in a 0700 per-user directory; any process
able to read it (the same user, or root) signs itself a certificate for a client
name, other users cannot (and the directory is refused if it is not the user's own
or lets others in). Links stay mutual TLS, so another user's processes, which hold
no certificate of this CA, are refused at the handshake.

**Join tokens** (``kubeadm join`` style, :mod:`party.enroll`). A token is
``tsr1.<id>.<secret>.<CA fingerprint>``: 128 random bits of secret, bound to one
party name in the router's token store (``tokens.json`` beside the CA: only a hash
of the secret, written atomically under a lock), single-use, expiring (``--ttl``,
at most 7 days). Step by step:

1. *Issue*: the operator on the CA's machine runs ``token``; it trusts the CA
   directory's owner. The token then travels to the new party's operator out of
   band (chat, ticket, phone); **whoever sees it before it is spent can take that
   one party name once**, so keep it short-lived. The fingerprint in it is public.
2. *Fetch the CA*: the client opens TLS to the enrollment endpoint without
   verifying anything and reads the certificate chain. This step trusts nothing:
   the client keeps the CA certificate only if its SHA-256 equals the token's
   fingerprint, so a man in the middle or a wrong address is detected here, and
   the token's secret has not been sent yet.
3. *Send the CSR*: over a new TLS channel verified against that CA (server name
   ``router``), the client sends the token and a CSR for a key made on its own
   machine. It trusts the CA of step 2; the private key never leaves the client;
   an eavesdropper sees nothing, an impostor server cannot complete TLS.
4. *Sign*: the router trusts the token alone: known id, matching secret
   (constant-time), not expired, not spent, not a revoked name, and the name the
   client asks for (if any) is the token's. It spends the token atomically (two
   racing requests cannot both win) and signs a certificate for the token's party
   name and the CSR's public key only; name, usages and validity are the CA's.
5. *Connect*: mutual TLS as for any party. The client keeps its key and
   certificate in its own 0700 state directory and reuses them when restarted
   with the same token.

**Revocation**: ``revoke --party NAME`` refuses every certificate and token for a
name (``--undo`` admits it again); ``revoke --cert FILE`` (or ``--serial``) refuses
one certificate, e.g. a lost key, after which a new token lets the party join
with a new key. The router checks this deny list (``revoked.json``) on every
connection and drops a live link within a second. The router's own machine is
trusted with the CA key whenever it serves enrollment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from party import cli
from party.config import check_party_name, load_federation
from party.errors import ConfigError
from party.files import write_atomic

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
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
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


def _ca_dir(args: argparse.Namespace) -> tuple[Path, list[str] | None]:
    """The CA directory of ``--config``, ``--out`` or the development federation, and the
    federation's party names when known."""
    if args.config:
        cfg = load_federation(args.config)
        return cfg.tls.ca.parent, list(cfg.parties)
    if args.out:
        return Path(args.out), None
    from party import devfed

    cfg = devfed.ensure_dev_federation()
    return cfg.tls.ca.parent, list(cfg.parties)


def _token_or_revoke(args: argparse.Namespace) -> int:
    from party import enroll

    directory, parties = _ca_dir(args)
    if args.cmd == "token":
        token = enroll.TokenStore(directory).issue(args.party, enroll.parse_ttl(args.ttl),
                                                   allowed=parties)
        print(token)
        print(f"one-time join token for {args.party!r}, valid {args.ttl}: on that machine run the "
              "client with TESSERA_JOIN_TOKEN=<token> (or join_token=). It enrolls at the server's "
              "port + 1 (a development server serves it there; a router: --enroll or "
              "[federation].enroll; the client: $TESSERA_ENROLL_ADDRESS)", file=sys.stderr)
        return 0
    print(enroll.revoke(directory, party=args.party, cert=args.cert, serial=args.serial,
                        reason=args.reason, undo=args.undo))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("party.certs", __doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    init = sub.add_parser("init", help="make a CA, a router certificate and party certificates")
    init.add_argument("--parties", help="comma-separated party names")
    init.add_argument("--config", help="federation TOML: parties and the CA directory from it")
    init.add_argument("--out", help="output directory (default: the config's CA directory, or certs)")
    init.add_argument("--router-hosts", default=",".join(DEFAULT_ROUTER_HOSTS),
                      help="host names/IPs the router certificate is valid for")
    init.add_argument("--days", type=int, default=365)
    init.add_argument("--overwrite", action="store_true")
    add = sub.add_parser("add", help="issue a certificate for one more party")
    add.add_argument("--out", default="certs")
    add.add_argument("--party", required=True)
    tok = sub.add_parser("token", help="print a one-time join token for one party name")
    tok.add_argument("--party", required=True, help="the party name the token is bound to")
    tok.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 2d (default 1h, at most 7d)")
    tok.add_argument("--config", help="federation TOML (default: this user's development federation)")
    tok.add_argument("--out", help="the CA directory (instead of --config)")
    rev = sub.add_parser("revoke", help="refuse a party, or one certificate, at the router from now on")
    rev.add_argument("--party", help="refuse every certificate and token for this name")
    rev.add_argument("--cert", help="refuse this one certificate (PEM file)")
    rev.add_argument("--serial", help="refuse the certificate with this hexadecimal serial")
    rev.add_argument("--reason", default="")
    rev.add_argument("--undo", action="store_true", help="with --party: admit the name again")
    rev.add_argument("--config", help="federation TOML (default: this user's development federation)")
    rev.add_argument("--out", help="the CA directory (instead of --config)")
    args = ap.parse_args(argv)
    return cli.run("party.certs", lambda: _run(ap, args))


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The body of ``main``; a TesseraError becomes one line and exit code 2 in ``cli.run``."""
    if args.cmd in ("token", "revoke"):
        return _token_or_revoke(args)
    if args.cmd == "add":
        add_party(args.out, args.party)
        print(f"wrote {args.out}/{args.party}.pem and .key")
        return 0
    hosts = [h for h in args.router_hosts.split(",") if h]
    if args.config:
        cfg = load_federation(args.config)
        parties = list(cfg.parties)
        out = Path(args.out) if args.out else cfg.tls.ca.parent
        host = cfg.router.rpartition(":")[0]
        if host not in hosts:
            hosts.append(host)
    elif args.parties:
        parties = [p.strip() for p in args.parties.split(",") if p.strip()]
        out = Path(args.out or "certs")
    else:
        ap.error("init needs --parties or --config")
    init_certs(out, parties, router_hosts=hosts, days=args.days, overwrite=args.overwrite)
    print(f"wrote CA, router and {len(parties)} party certificates to {out}/ (keys 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
