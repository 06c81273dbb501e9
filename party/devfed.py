"""The local development federation: zero configuration on one machine.

When a server starts without a federation file it makes (once, then reuses) a
federation in a per-user state directory: ``$TESSERA_STATE_DIR``, else
``$XDG_STATE_HOME/tessera``, else ``~/.local/state/tessera``; the federation is in
its ``dev/`` subdirectory (mode 0700, keys 0600):

- a CA (``ca.pem``, ``ca.key``), a router certificate and the server's certificate;
- ``federation.toml`` naming the party ``server`` and a pool of client names
  ``client_0`` … ``client_{DEV_CLIENTS-1}``.

A client of the same user on the same machine claims the first free name of the
pool (an exclusive lock on ``slots/<name>.lock`` held for the life of the process,
so names are unique among running processes; a name given with a join token is
never claimed) and signs itself a certificate for it with the dev CA key.

What this trusts: **the local user account**. Any process that can read this
user's files (the user, or root) can become any party of the dev federation;
other users cannot (the directory is 0700 and owned by the user, and this module
refuses to use one that is not). Every link is still mutual TLS with certificates
of this CA: a process without one (another user's, a remote machine's) is refused
at the TLS handshake. For other machines use join tokens (``python -m party.certs
token``); for production a federation file (``python -m party.certs init``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import stat
from pathlib import Path

from cryptography import x509

from party.ca import add_party, init_certs, locked
from party.config import FederationConfig, load_federation
from party.errors import ConfigError
from party.files import write_atomic
from party.party import Role

STATE_ENV = "TESSERA_STATE_DIR"
#: How many client names the dev federation's pool holds (concurrent local clients).
DEV_CLIENTS = 32
SERVER = "server"
_HELD: dict[str, int] = {}  # name -> fd of the slot lock this process holds


def state_dir() -> Path:
    """The per-user state directory (not created here)."""
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "tessera"


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed; ConfigError unless it is ours and user-only."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except PermissionError as e:
        raise ConfigError(f"cannot use {path}: permission denied ({e.filename}); the development "
                          "federation belongs to another user") from None
    uid = os.getuid()
    if st.st_uid != uid:
        raise ConfigError(f"refusing {path}: it belongs to uid {st.st_uid}, not to you (uid {uid}); "
                          f"set ${STATE_ENV} to a directory of your own")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"refusing {path}: mode {stat.S_IMODE(st.st_mode):o} lets other users in "
                          f"(chmod 700 {path})")
    return path


def dev_dir() -> Path:
    """The dev federation's directory, checked to be private (created if absent)."""
    private_dir(state_dir())
    return private_dir(state_dir() / "dev")


def _valid(path: Path, *, days: float = 1.0) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    return left > dt.timedelta(days=days)


def _check_key(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"refusing {path}: a key must be yours and mode 600 "
                          f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})")


def ensure_dev_federation() -> FederationConfig:
    """Make the dev federation if it is missing or its CA expires within a day; load it."""
    d = dev_dir()
    toml = d / "federation.toml"
    with locked(d / ".lock"):
        fresh = not (all((d / f).is_file() for f in ("ca.key", "router.key", f"{SERVER}.key"))
                     and _valid(d / "ca.pem", days=2) and _valid(d / "router.pem")
                     and _valid(d / f"{SERVER}.pem") and toml.is_file())
        if fresh:
            for old in d.glob("*.pem"):  # certificates of an old CA are worthless now
                old.unlink()
            init_certs(d, [SERVER], overwrite=True)
            user = "".join(c if c.isalnum() else "-" for c in _user()) or "user"
            lines = ["# made by party.devfed: the local development federation (trusts this user account)",
                     "[federation]", f'name = "dev-{user}"', 'router = "127.0.0.1:8080"', "",
                     "[tls]", 'ca = "ca.pem"', "", f"[parties.{SERVER}]", 'role = "server"', ""]
            for i in range(DEV_CLIENTS):
                lines += [f"[parties.client_{i}]", 'role = "client"', ""]
            write_atomic(toml, "\n".join(lines), mode=0o600)
        _check_key(d / "ca.key")
    return load_federation(toml)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def claim_client(cfg: FederationConfig, name: str | None = None) -> str:
    """A client name of the dev pool for this process (``name``: that one), with a
    valid certificate for it; ConfigError if every name is taken."""
    from party.enroll import DenyList, token_parties

    d = cfg.tls.ca.parent
    private_dir(d)
    slots = private_dir(d / "slots")
    pool = cfg.names(Role.CLIENT)
    if name is not None:
        if name not in pool:
            raise ConfigError(f"{name!r} is not a client of the development federation "
                              f"(client_0 … client_{len(pool) - 1})")
        pool = [name]
    taken = token_parties(d)
    deny = DenyList(d)
    for cand in pool:
        if cand in _HELD:
            if name is not None:
                return cand
            continue
        if cand in taken and name is None:
            continue
        if deny.denies(cand, None):
            continue
        if not _lock(slots / f"{cand}.lock", cand):
            continue
        with locked(d / ".lock"):
            pem = d / f"{cand}.pem"
            ok = _valid(pem) and (d / f"{cand}.key").is_file()
            if ok:
                ok = not deny.denies(cand, x509.load_pem_x509_certificate(pem.read_bytes()).serial_number)
            if not ok:
                add_party(d, cand)
        return cand
    raise ConfigError(
        f"no free client name in the development federation ({len(cfg.names(Role.CLIENT))} "
        "local clients at most" + (f"; {name!r} is held by another process" if name else "") + ")")


def _lock(path: Path, name: str) -> bool:
    import fcntl

    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _HELD[name] = fd
    return True


def release_client(name: str) -> None:
    """Give a claimed name back (it is also given back when the process ends)."""
    fd = _HELD.pop(name, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def notice(directory: Path, address: str) -> str:
    """The one message the server prints when it starts in development mode."""
    return (
        f"DEVELOPMENT MODE (no federation file): a local federation in {directory} "
        f"(CA and certificates, directory 0700, keys 0600), router on {address}. "
        f"It trusts the local user account: any process of user {_user()!r} on this machine "
        "can enroll as a client; other users cannot read the directory, and every link is "
        "still mutual TLS. Other machines: `python -m party.certs token --party NAME`; "
        "production: a federation file (`python -m party.certs init`)."
    )
