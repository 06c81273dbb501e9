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
import sys
from collections.abc import Sequence
from pathlib import Path

from party import cli
from party.ca import (  # re-exported: the certificate primitives live in party.ca
    DEFAULT_ROUTER_HOSTS,
    ISSUED,
    add_party,
    init_certs,
    load_ca,
    locked,
    make_ca,
    make_cert,
    read_json,
    record_issued,
    sign_public_key,
)
from party.ca import _write_cert as _write_cert
from party.ca import _write_key as _write_key
from party.config import load_federation

__all__ = [
    "DEFAULT_ROUTER_HOSTS", "ISSUED", "add_party", "init_certs", "load_ca", "locked", "main",
    "make_ca", "make_cert", "read_json", "record_issued", "sign_public_key",
]


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
