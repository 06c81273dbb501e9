"""Join tokens, enrollment over gRPC, and the router's deny list (party.enroll, party.certs)."""

from __future__ import annotations

import dataclasses
import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from party import AuthenticationError, ConfigError, PartyUnavailable, Tag
from party.certs import init_certs, make_ca
from party.certs import main as certs_main
from party.config import load_federation, write_federation
from party.enroll import (
    EnrollmentServer,
    JoinToken,
    TokenStore,
    _fp_der,
    join,
    parse_token,
    revoke,
    save_enrolled,
)
from party.grpc_transport import connect
from party.local import free_port
from party.router import Router

pytestmark = pytest.mark.grpc

PARTIES = {"server": "server", "client_3": "client", "client_4": "client", "client_5": "client"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("join")
    init_certs(root / "certs", list(PARTIES))
    port, eport = free_port(), free_port()
    toml = write_federation(root / "fed.toml", name="joins", router=f"127.0.0.1:{port}",
                            parties=PARTIES)
    cfg = load_federation(toml)
    router = Router(cfg, enroll=f"127.0.0.1:{eport}").start()
    try:
        yield cfg, f"127.0.0.1:{eport}", root
    finally:
        router.stop()


def _token(cfg, party: str, ttl_s: float = 600.0, now: float | None = None) -> str:
    return TokenStore(cfg.tls.ca.parent).issue(party, ttl_s, now=now, allowed=list(cfg.parties))


def _joined_cfg(enrolled, directory: Path, router: str):
    return load_federation(save_enrolled(enrolled, directory, router=router))


def test_join_end_to_end_over_grpc(fed, tmp_path: Path) -> None:
    cfg, eaddr, _ = fed
    token = _token(cfg, "client_3")
    assert len(token) < 90 and parse_token(token).fingerprint == _fp_der(
        x509.load_pem_x509_certificate(cfg.tls.ca.read_bytes()).public_bytes(
            __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER))
    enrolled = join(eaddr, token)  # no name given: the token's
    assert enrolled.party == "client_3"
    cert = x509.load_pem_x509_certificate(enrolled.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=client_3"
    mine = _joined_cfg(enrolled, tmp_path / "joined", cfg.router)
    assert stat.S_IMODE((tmp_path / "joined" / "client_3.key").stat().st_mode) == 0o600
    assert mine.party("client_3").role.value == "client" and set(mine.parties) == set(PARTIES)
    issued = json.loads((cfg.tls.ca.parent / "issued.json").read_text())["certs"]
    assert issued[format(cert.serial_number, "x")] == {
        "party": "client_3", "via": "token",
        "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds")}
    with connect(cfg, "server") as server, connect(mine, "client_3") as client:
        client.send("server", Tag("join", "s"), {"hello": 3})
        assert server.recv("client_3", Tag("join", "s"), timeout_s=10) == {"hello": 3}
    # the token is spent: a second join with it is refused
    with pytest.raises(AuthenticationError, match="already used"):
        join(eaddr, token)


def test_expired_token_is_refused(fed) -> None:
    cfg, eaddr, _ = fed
    token = _token(cfg, "client_4", ttl_s=60, now=time.time() - 120)
    with pytest.raises(AuthenticationError, match="expired"):
        join(eaddr, token)


def test_token_for_another_party_name_is_refused_and_not_spent(fed) -> None:
    cfg, eaddr, _ = fed
    token = _token(cfg, "client_4")
    with pytest.raises(AuthenticationError, match="bound to party 'client_4', not 'client_5'"):
        join(eaddr, token, name="client_5")
    assert join(eaddr, token, name="client_4").party == "client_4"


def test_wrong_ca_fingerprint_never_sends_the_token(fed) -> None:
    cfg, eaddr, _ = fed
    token = parse_token(_token(cfg, "client_5"))
    _, other_ca = make_ca()
    forged = JoinToken(token.id, token.secret, _fp_der(other_ca.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)))
    with pytest.raises(AuthenticationError, match="does not present the CA of the join token"):
        join(eaddr, str(forged))
    entry = json.loads((cfg.tls.ca.parent / "tokens.json").read_text())["tokens"][token.id]
    assert entry["used"] is None  # the secret never reached the server


def test_unknown_or_malformed_token(fed) -> None:
    cfg, eaddr, _ = fed
    real = parse_token(_token(cfg, "client_5"))
    with pytest.raises(AuthenticationError, match="unknown join token"):
        join(eaddr, str(dataclasses.replace(real, secret="A" * 22)))
    with pytest.raises(ConfigError, match="malformed join token"):
        join(eaddr, "tsr1.nothex.x.y")


def test_token_for_a_name_outside_the_federation_is_refused(fed) -> None:
    cfg, _, _ = fed
    with pytest.raises(ConfigError, match="not a party of the federation"):
        _token(cfg, "client_9")


def test_no_enrollment_endpoint_is_unavailable(fed) -> None:
    cfg, _, _ = fed
    with pytest.raises(PartyUnavailable, match="enrollment endpoint"):
        join(f"127.0.0.1:{free_port()}", _token(cfg, "client_5"), timeout_s=2)


def test_revoked_party_is_refused_at_connect_enroll_and_while_connected(fed, tmp_path: Path) -> None:
    cfg, eaddr, _ = fed
    ca_dir = cfg.tls.ca.parent
    # a joined party's certificate revoked while it is connected: the router drops it
    enrolled = join(eaddr, _token(cfg, "client_5"))
    mine = _joined_cfg(enrolled, tmp_path / "j5", cfg.router)
    with connect(cfg, "server") as server:
        client = connect(mine, "client_5")
        try:
            revoke(ca_dir, cert=tmp_path / "j5" / "client_5.pem", reason="laptop lost")
            with pytest.raises(AuthenticationError, match="laptop lost"):
                client.recv("server", Tag("join", "never"), timeout_s=10)
        finally:
            client.close()
        # ... and it cannot come back with that certificate
        with pytest.raises(AuthenticationError, match="revoked: laptop lost"):
            connect(mine, "client_5", connect_timeout_s=10)
        # a new token gives a new key and certificate, which is admitted
        again = _joined_cfg(join(eaddr, _token(cfg, "client_5")), tmp_path / "j5b", cfg.router)
        with connect(again, "client_5") as c5:
            # the server sees the old incarnation go down, then the new one come up
            server.transport.wait_peer("client_5", timeout_s=10, other_than=client.transport.incarnation)
            c5.send("server", Tag("join", "back"), 5)
            assert server.recv("client_5", Tag("join", "back"), timeout_s=10) == 5
    # a revoked party name: its original certificate, and any token for it, are refused
    assert certs_main(["revoke", "--out", str(ca_dir), "--party", "client_4", "--reason", "left"]) == 0
    try:
        with pytest.raises(AuthenticationError, match="party revoked: left"):
            connect(cfg, "client_4", connect_timeout_s=10)
        with pytest.raises(ConfigError, match="revoked"):
            _token(cfg, "client_4")
    finally:
        revoke(ca_dir, party="client_4", undo=True)
    with connect(cfg, "client_4") as c4:
        assert c4.name == "client_4"


def test_enrollment_decision_without_a_network(fed) -> None:
    """The router's side of a join as a pure function: bad CSRs are refused."""
    cfg, _, _ = fed
    srv = EnrollmentServer(cfg, "127.0.0.1:0")
    tok = parse_token(_token(cfg, "client_3"))
    from party.codec import encode

    with pytest.raises(ConfigError, match="CSR is not PEM"):
        srv.handle(bytes(encode({"token_id": tok.id, "secret": tok.secret, "csr": b"junk"})))
    with pytest.raises(ConfigError, match="join request"):
        srv.handle(bytes(encode({"token_id": tok.id})))


def test_cli_prints_a_token(fed, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _, root = fed
    assert certs_main(["token", "--config", str(root / "fed.toml"), "--party", "client_3",
                       "--ttl", "1h"]) == 0
    token = capsys.readouterr().out.strip()
    entry = json.loads((cfg.tls.ca.parent / "tokens.json").read_text())["tokens"][parse_token(token).id]
    assert entry["party"] == "client_3" and 3590 < entry["expires"] - entry["created"] <= 3600
    assert token not in (cfg.tls.ca.parent / "tokens.json").read_text()  # only a hash is stored
    assert certs_main(["token", "--config", str(root / "fed.toml"), "--party", "client_3",
                       "--ttl", "9d"]) == 2


def test_enroll_address_in_the_federation_file(tmp_path: Path) -> None:
    from party.config import parse_federation

    base: dict[str, Any] = {"federation": {"name": "f", "router": "127.0.0.1:1"}, "tls": {"ca": "ca.pem"},
            "parties": {"server": {"role": "server"}}}
    assert parse_federation(base, base=tmp_path).enroll is None
    base["federation"]["enroll"] = "0.0.0.0:50052"
    assert parse_federation(base, base=tmp_path).enroll == "0.0.0.0:50052"
    base["federation"]["enroll"] = "nowhere"
    with pytest.raises(ConfigError, match=r"\[federation\].enroll: 'nowhere' is not a host:port"):
        parse_federation(base, base=tmp_path)
