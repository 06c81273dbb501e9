"""Join tokens through hfl.deploy: a development-mode server prints a token on request, and
a client "on another machine" (its own state directory, no copy of any key file) joins with
it over gRPC, then restarts with the same spent token by reusing what it enrolled."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest

from hfl.deploy import client_party_loop, server_party
from party import AuthenticationError, Party, Tag, devfed
from party.local import free_port

pytestmark = pytest.mark.grpc


def test_dev_server_token_and_a_client_from_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TESSERA_FEDERATION", raising=False)
    monkeypatch.delenv("TESSERA_JOIN_TOKEN", raising=False)
    monkeypatch.setenv(devfed.STATE_ENV, str(tmp_path / "server-machine"))
    monkeypatch.setenv("TESSERA_JOIN_TOKENS", "client_7")
    address = f"127.0.0.1:{free_port()}"
    with server_party(server_address=address, federation=None, name=None,
                      host_router=True) as (server, clients):
        out = capsys.readouterr().out
        assert out.count("DEVELOPMENT MODE") == 1 and "trusts the local user account" in out
        assert server.name == "server" and "client_7" in clients
        m = re.search(r"join token for 'client_7' \(1 h, single use\): (tsr1\.\S+)", out)
        assert m, out
        token = m.group(1)
        # the other machine: its own state directory, nothing copied
        monkeypatch.setenv(devfed.STATE_ENV, str(tmp_path / "client-machine"))
        monkeypatch.delenv("TESSERA_JOIN_TOKENS")
        seen: list[str] = []

        def serve(party: Party, srv: str) -> str:
            seen.append(party.name)
            party.send(srv, Tag("joined", str(len(seen))), party.name)
            return "shutdown"

        kw: dict[str, Any] = {"server_address": address, "federation": None, "name": None,
                              "server_name": None, "max_retries": 3, "max_wait_time": 20.0,
                              "insecure": False, "serve": serve}
        assert client_party_loop(**kw, join_token=token) == "shutdown"
        assert server.recv("client_7", Tag("joined", "1"), timeout_s=10) == "client_7"
        joined = next((tmp_path / "client-machine" / "joined").iterdir())
        assert stat.S_IMODE((joined / "client_7.key").stat().st_mode) == 0o600
        assert not (joined / "ca.key").exists()  # a joined party never holds the CA key
        # restarted with the same (spent) token: it reuses its certificate
        monkeypatch.setenv("TESSERA_JOIN_TOKEN", token)
        assert client_party_loop(**kw) == "shutdown"
        assert seen == ["client_7", "client_7"]
        # but the token cannot enroll anyone else: the spent token is refused at the server
        monkeypatch.setenv(devfed.STATE_ENV, str(tmp_path / "third-machine"))
        with pytest.raises(AuthenticationError, match="already used"):
            client_party_loop(**kw)
