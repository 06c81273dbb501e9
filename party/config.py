"""Federation config: one TOML file for a whole federation.

Example (paths are relative to the file)::

    [federation]
    name = "credit-vfl"
    router = "127.0.0.1:50051"      # the address parties dial
    # listen = "0.0.0.0:50051"      # where the router binds (default: router)
    # max_message_mb = 1024
    # timeout_s = 120               # default per-recv timeout for protocols
    # enroll = "0.0.0.0:50052"      # serve join-token enrollment there (party.enroll)

    [tls]
    ca = "certs/ca.pem"
    router_cert = "certs/router.pem" # used by the router only
    router_key = "certs/router.key"

    [parties.bank]
    role = "active"
    cert = "certs/bank.pem"           # default: <ca dir>/<name>.pem
    key = "certs/bank.key"            # default: <ca dir>/<name>.key; needed only by bank
    # psi_endpoint = "10.0.0.5:61001" # where bank's spu PSI link listens (rr22/kkrt only)

    [parties.fintech]
    role = "passive"

Any wrong or missing field raises :class:`ConfigError` naming the file and field.
So does any key or table the loader does not know (a typo such as ``max_mesage_mb``
would otherwise be silently ignored); the error suggests the closest known name.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from party.errors import ConfigError
from party.party import Role

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The keys each table may hold; anything else is refused (see :func:`_check_keys`).
#: A new setting must be added here as well as read in :func:`parse_federation`.
TOP_TABLES: tuple[str, ...] = ("federation", "tls", "parties")
FEDERATION_KEYS: tuple[str, ...] = ("name", "router", "listen", "max_message_mb", "timeout_s",
                                     "enroll")
TLS_KEYS: tuple[str, ...] = ("ca", "router_cert", "router_key")
PARTY_KEYS: tuple[str, ...] = ("role", "cert", "key", "psi_endpoint")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_party_name(name: str, where: str = "party name") -> str:
    """Party names are certificate common names and tag parts: keep them simple."""
    if (
        not isinstance(name, str)
        or not _NAME.match(name)
        or name.lower() in ("router", "localhost")
        or _is_ip(name)
    ):
        raise ConfigError(
            f"{where}: {name!r} is not a valid party name "
            "(letters, digits, '_', '.', '-'; at most 63 characters; "
            "not 'router', 'localhost' or an IP address)"
        )
    return name


def _is_ip(name: str) -> bool:
    # Party certificates carry serverAuth too (a party's own PSI endpoint, issue 15),
    # so a party name must never be a name the router is reached by.
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class TlsConfig:
    """Paths of the federation's CA and the router's certificate."""

    ca: Path
    router_cert: Path
    router_key: Path


@dataclass(frozen=True)
class PartyConfig:
    """One party of the federation."""

    name: str
    role: Role
    cert: Path
    key: Path
    #: host:port of this party's direct PSI link (spu's brpc, mutual TLS from the CA);
    #: needed only for the rr22/kkrt PSI protocols (:mod:`psi.spu`).
    psi_endpoint: str | None = None


@dataclass(frozen=True)
class FederationConfig:
    """A parsed federation file."""

    name: str
    router: str
    listen: str
    tls: TlsConfig
    parties: dict[str, PartyConfig]
    max_message_bytes: int = 1 << 30
    timeout_s: float = 120.0
    source: Path | None = None
    #: Always empty from :func:`parse_federation` (unknown tables are refused); kept so
    #: code that builds a config by hand can still attach its own settings.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Where the router serves join-token enrollment (None: it does not).
    enroll: str | None = None

    def party(self, name: str) -> PartyConfig:
        """The config of ``name``; ConfigError if it is not in the federation."""
        try:
            return self.parties[name]
        except KeyError:
            raise ConfigError(
                f"{self.source or 'federation config'}: party {name!r} is not in [parties] "
                f"(known: {', '.join(sorted(self.parties))})"
            ) from None

    def names(self, role: Role | str | None = None) -> list[str]:
        """Party names, optionally only those with ``role``."""
        return [p.name for p in self.parties.values() if role is None or p.role == Role(role)]


def _did_you_mean(key: str, known: tuple[str, ...], fmt: str = "{!r}") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"did you mean {fmt.format(close[0])}?"
    return "known: " + ", ".join(fmt.format(k) for k in known)


def _check_keys(d: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """ConfigError on the first key of table ``d`` that is not in ``known``."""
    for key in d:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} ({_did_you_mean(key, known)})")


def _check_top(data: dict[str, Any], src: str) -> None:
    """Refuse unknown top-level tables and keys (a key belongs inside a table)."""
    for key, v in data.items():
        if key in TOP_TABLES:
            continue
        if not isinstance(v, dict):
            tables = [t for t, keys in (("federation", FEDERATION_KEYS), ("tls", TLS_KEYS)) if key in keys]
            hint = (f"it belongs in [{tables[0]}]" if tables
                    else _did_you_mean(key, FEDERATION_KEYS + TLS_KEYS))
            raise ConfigError(f"{src}: unknown top-level key {key!r} outside any table ({hint})")
        missing = [t for t in TOP_TABLES if not isinstance(data.get(t), dict)]
        prefix = f"missing table [{missing[0]}]; " if missing else ""
        raise ConfigError(f"{src}: {prefix}unknown table [{key}] ({_did_you_mean(key, TOP_TABLES, '[{}]')})")


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing field {key!r}")
    v = d[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise ConfigError(f"{where}.{key}: expected {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _address(v: str, where: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {v!r} is not a host:port address")
    return v


def parse_federation(data: dict[str, Any], *, base: Path, source: Path | None = None) -> FederationConfig:
    """Build a FederationConfig from parsed TOML (``base``: directory for relative paths)."""
    src = str(source or "federation config")
    _check_top(data, src)
    if not isinstance(data.get("federation"), dict):
        raise ConfigError(f"{src}: missing table [federation]")
    fed = data["federation"]
    _check_keys(fed, FEDERATION_KEYS, f"{src} [federation]")
    name = _get(fed, "name", str, f"{src} [federation]")
    router = _address(_get(fed, "router", str, f"{src} [federation]"), f"{src} [federation].router")
    listen = _address(str(fed.get("listen", router)), f"{src} [federation].listen")
    max_mb = fed.get("max_message_mb", 1024)
    if not isinstance(max_mb, int) or isinstance(max_mb, bool) or max_mb <= 0:
        raise ConfigError(f"{src} [federation].max_message_mb: expected a positive integer, got {max_mb!r}")
    timeout_s = fed.get("timeout_s", 120.0)
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise ConfigError(f"{src} [federation].timeout_s: expected a positive number, got {timeout_s!r}")

    enroll = fed.get("enroll")
    if enroll is not None:
        enroll = _address(str(enroll), f"{src} [federation].enroll")

    def path(v: str) -> Path:
        p = Path(v)
        return p if p.is_absolute() else (base / p)

    if not isinstance(data.get("tls"), dict):
        raise ConfigError(f"{src}: missing table [tls]")
    tls_d = data["tls"]
    _check_keys(tls_d, TLS_KEYS, f"{src} [tls]")
    ca = path(_get(tls_d, "ca", str, f"{src} [tls]"))
    tls = TlsConfig(
        ca=ca,
        router_cert=path(str(tls_d.get("router_cert", ca.parent / "router.pem"))),
        router_key=path(str(tls_d.get("router_key", ca.parent / "router.key"))),
    )
    parties_d = data.get("parties")
    if not isinstance(parties_d, dict) or not parties_d:
        raise ConfigError(f"{src}: missing table [parties] (one [parties.<name>] per party)")
    parties: dict[str, PartyConfig] = {}
    for pname, pd in parties_d.items():
        where = f"{src} [parties.{pname}]"
        check_party_name(pname, where)
        if not isinstance(pd, dict):
            raise ConfigError(f"{where}: expected a table")
        _check_keys(pd, PARTY_KEYS, where)
        role_s = _get(pd, "role", str, where)
        try:
            role = Role(role_s)
        except ValueError:
            raise ConfigError(
                f"{where}.role: {role_s!r} is not one of {[r.value for r in Role]}"
            ) from None
        parties[pname] = PartyConfig(
            name=pname,
            role=role,
            cert=path(str(pd.get("cert", ca.parent / f"{pname}.pem"))),
            key=path(str(pd.get("key", ca.parent / f"{pname}.key"))),
            psi_endpoint=(_address(_get(pd, "psi_endpoint", str, where), f"{where}.psi_endpoint")
                          if "psi_endpoint" in pd else None),
        )
    return FederationConfig(
        name=name, router=router, listen=listen, tls=tls, parties=parties,
        max_message_bytes=max_mb << 20, timeout_s=float(timeout_s), source=source,
        enroll=enroll,
    )


def load_federation(path: str | Path) -> FederationConfig:
    """Read and check a federation TOML file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read federation config {p}: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse_federation(data, base=p.resolve().parent, source=p)


def write_federation(
    path: str | Path,
    *,
    name: str,
    router: str,
    parties: dict[str, str],
    cert_dir: str = "certs",
    listen: str | None = None,
    timeout_s: float | None = None,
) -> Path:
    """Write a federation TOML (parties: name -> role), certificates under ``cert_dir``."""
    from party.files import write_atomic

    lines = ["[federation]", f'name = "{name}"', f'router = "{router}"']
    if listen:
        lines.append(f'listen = "{listen}"')
    if timeout_s is not None:
        lines.append(f"timeout_s = {timeout_s}")
    lines += ["", "[tls]", f'ca = "{cert_dir}/ca.pem"', ""]
    for pname, role in parties.items():
        check_party_name(pname)
        lines += [f"[parties.{pname}]", f'role = "{Role(role).value}"', ""]
    write_atomic(path, "\n".join(lines))
    return Path(path)
