"""RR22 and KKRT through spu (psi.spu): joins against set computations, FATE credit, mTLS, mismatches.

Each run is a real spu run: two worker processes over spu's brpc link with mutual TLS on
127.0.0.1 (free ports); the parties' own messages go over an in-memory network.
Where spu cannot be loaded (another Python than 3.11), only the clear-error test runs.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from party import InMemoryNetwork, Party
from party.certs import init_certs
from party.errors import (
    AuthenticationError,
    ClosedTransport,
    ConfigError,
    PartyUnavailable,
    PeerAborted,
)
from party.handshake import RunMismatch
from party.testing import run_parties
from psi import IdError, PsiConfig, run_psi
from psi._spu_worker import spu_problem
from psi.join import PLACEHOLDER
from psi.protocol import JOINS
from psi.spu import SpuLink, SpuUnavailable
from tests.psi.helpers import random_sets
from tests.psi.test_join import check_join_outputs
from vfl.align import align

needs_spu = pytest.mark.skipif(spu_problem() is not None, reason=f"spu: {spu_problem()}")
NAMES = ("bank", "fintech")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("spu-certs")
    init_certs(d, list(NAMES), overwrite=True)
    return d


def links(certs: Path, *, cert_dir: dict[str, Path] | None = None, timeout_s: float = 20.0) -> dict[str, SpuLink]:
    eps = {n: f"127.0.0.1:{free_port()}" for n in NAMES}
    cd = cert_dir or {}
    return {n: SpuLink(eps, certs / "ca.pem", cd.get(n, certs) / f"{n}.pem", cd.get(n, certs) / f"{n}.key",
                       connect_timeout_s=timeout_s) for n in NAMES}


def run_two(ids: dict[str, Any], cfgs: dict[str, PsiConfig], lk: dict[str, SpuLink],
            catch: tuple[type[BaseException], ...] = ()) -> dict[str, Any]:
    def fn(name: str):
        def f(p: Party) -> Any:
            try:
                return run_psi(p, ids[name], config=cfgs[name], timeout_s=60, link=lk[name])
            except catch as e:
                return e
        return f
    return run_parties({n: fn(n) for n in NAMES}, timeout_s=120)


# each protocol meets every join type and every overlap (0 %, 50 %, 100 %), sizes unequal
CASES = [(proto, join, (0.0, 0.5, 1.0)[(i + k) % 3])
         for k, proto in enumerate(("rr22", "kkrt")) for i, join in enumerate(JOINS)]


@needs_spu
@pytest.mark.parametrize(("protocol", "join", "overlap"), CASES)
def test_each_protocol_and_join_matches_the_set_computation(
        certs: Path, protocol: str, join: str, overlap: float) -> None:
    a, b = random_sets(int(overlap * 7) + len(join), 300, 200, overlap)
    b_spelled = [f"  {x.upper()}\t" for x in b]  # the one normalisation holds for spu too
    cfg = PsiConfig(protocol=protocol, join=join)
    out = run_two({"bank": a, "fintech": b_spelled}, dict.fromkeys(NAMES, cfg), links(certs))
    check_join_outputs(join, a, b, out["bank"].rows, out["fintech"].rows)
    shared = len(set(a) & set(b))
    assert out["bank"].size == out["fintech"].size == shared
    assert out["bank"].peer_sizes == {"fintech": 200} and out["bank"].protocol == protocol
    assert out["fintech"].normalize.case_folded == 200


@needs_spu
def test_mode_one_only_the_receiver_learns(certs: Path) -> None:
    a, b = random_sets(11, 150, 100, 0.5)
    cfg = PsiConfig(protocol="rr22", mode="one", receiver="fintech")
    out = run_two({"bank": a, "fintech": b}, dict.fromkeys(NAMES, cfg), links(certs))
    assert out["bank"].rows is None and out["bank"].size is None
    assert sorted(b[i] for i in out["fintech"].rows) == sorted(set(a) & set(b))


@pytest.fixture(scope="module")
def credit(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FATE default_credit guest/host, each with a different random 10% of rows removed."""
    g = pd.read_csv(data_dir / "fate" / "default_credit_hetero_guest.csv", dtype=str)
    h = pd.read_csv(data_dir / "fate" / "default_credit_hetero_host.csv", dtype=str)
    return g.sample(frac=0.9, random_state=3), h.sample(frac=0.9, random_state=4)


@needs_spu
@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "join"), [("rr22", "inner"), ("kkrt", "left")])
def test_fate_credit_with_rows_removed(certs: Path, credit: tuple[pd.DataFrame, pd.DataFrame],
                                       protocol: str, join: str) -> None:
    g, h = credit
    lk = links(certs)
    cfg = PsiConfig(protocol=protocol, join=join, left="bank" if join == "left" else None)
    out = run_parties({
        "bank": lambda p: align(p, g, ["id"], config=cfg, timeout_s=60, link=lk["bank"]),
        "fintech": lambda p: align(p, h, ["id"], config=cfg, timeout_s=60, link=lk["fintech"]),
    }, timeout_s=120)
    go, ho = out["bank"].table, out["fintech"].table
    shared = set(g["id"]) & set(h["id"])
    s = len(shared)
    assert list(go["id"][:s]) == list(ho["id"][:s])  # one agreed order
    assert set(go["id"][:s]) == shared
    pd.testing.assert_frame_equal(go[:s].set_index("id"), g.set_index("id").loc[go["id"][:s]])
    rep = out["bank"].report
    assert rep["protocol"] == protocol and rep["join"] == join and rep["shared_rows"] == s
    if join == "left":  # bank keeps all its rows; fintech has empty rows opposite bank-only ones
        assert len(go) == len(ho) == len(g)
        assert set(go["id"]) == set(g["id"])
        assert ho[s:].isna().all().all() and out["fintech"].report["placeholder_rows"] == len(g) - s
        assert list(go["id"][s:]) == [x for x in g["id"] if x not in shared]  # input order


@needs_spu
def test_a_foreign_certificate_is_refused(certs: Path, tmp_path: Path) -> None:
    """fintech's certificate is from another CA: the TLS handshake of the PSI link fails."""
    evil = tmp_path / "evil"
    init_certs(evil, list(NAMES), overwrite=True)
    a, b = random_sets(3, 50, 50, 0.5)
    cfg = PsiConfig(protocol="rr22")
    out = run_two({"bank": a, "fintech": b}, dict.fromkeys(NAMES, cfg),
                  links(certs, cert_dir={"fintech": evil}, timeout_s=3),
                  catch=(AuthenticationError, PartyUnavailable))
    assert all(isinstance(e, (AuthenticationError, PartyUnavailable)) for e in out.values()), out
    auth = [e for e in out.values() if isinstance(e, AuthenticationError)]
    assert auth, out  # at least one side names the TLS refusal and the CA
    assert "TLS handshake" in str(auth[0]) and "ca.pem" in str(auth[0])


@needs_spu
@pytest.mark.parametrize(("theirs", "field"), [
    (PsiConfig(), "info.protocol"),                          # ECDH against RR22
    (PsiConfig(protocol="kkrt"), "info.protocol"),
    (PsiConfig(protocol="rr22", join="left"), "info.join"),
])
def test_a_peer_on_another_protocol_or_join_is_named_before_spu_starts(
        certs: Path, theirs: PsiConfig, field: str) -> None:
    a, b = random_sets(4, 30, 30, 0.5)
    out = run_two({"bank": a, "fintech": b}, {"bank": PsiConfig(protocol="rr22"), "fintech": theirs},
                  links(certs), catch=(RunMismatch, PeerAborted))
    assert all(isinstance(e, (RunMismatch, PeerAborted)) for e in out.values()), out
    assert any(isinstance(e, RunMismatch) and field in str(e) for e in out.values()), out


@needs_spu
def test_duplicates_and_empty_ids_are_refused_before_any_message(certs: Path) -> None:
    net = InMemoryNetwork(list(NAMES))
    party = Party("bank", net.transport("bank"))
    lk = links(certs)["bank"]
    with pytest.raises(IdError, match="repeat"):
        run_psi(party, ["x", "y", "X"], config=PsiConfig(protocol="rr22"), link=lk, timeout_s=1)
    with pytest.raises(IdError):
        run_psi(party, ["x", ""], config=PsiConfig(protocol="kkrt"), link=lk, timeout_s=1)
    assert party.transport.stats.snapshot()["messages_sent"] == 0


@needs_spu
def test_the_router_carries_no_id_and_no_hash(certs: Path) -> None:
    """threats.md row 20 for spu: tessera's own channel carries only the handshake, sizes and
    digests; IDs and their hashes go only into spu (whose OPRF hides the non-shared ones)."""
    from party.codec import decode

    a, b = random_sets(8, 80, 60, 0.5)
    net = InMemoryNetwork(list(NAMES))
    seen: list[bytes] = []
    for n in NAMES:
        t = net.transport(n)
        real = t.send

        def spy(dst: str, tag: Any, data: Any, _real: Any = real) -> Any:
            seen.append(bytes(data) if isinstance(data, (bytes, bytearray, memoryview))
                        else b"".join(bytes(x) for x in data))
            return _real(dst, tag, data)
        t.send = spy  # type: ignore[method-assign]
    lk = links(certs)
    cfg = PsiConfig(protocol="rr22")
    out = run_parties({n: (lambda p, ids=ids: run_psi(p, ids, config=cfg, timeout_s=60, link=lk[p.name]))
                       for n, ids in (("bank", a), ("fintech", b))}, network=net)
    assert out["bank"].size == 30
    kinds = {type(decode(bytearray(m))).__name__ for m in seen}
    assert kinds <= {"RunHello", "RunConfirm", "Count"}, kinds
    blob = b"".join(seen)
    assert not any(x.encode() in blob for x in a + b if len(x) > 3)
    assert not any(x.encode().hex().encode() in blob for x in a + b)  # spu's input encoding


def test_other_pythons_get_a_clear_error_and_ecdh_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    import psi.spu

    monkeypatch.setattr(psi.spu, "PYTHON_VERSION", (3, 12))
    net = InMemoryNetwork(list(NAMES))
    party = Party("bank", net.transport("bank"))
    with pytest.raises(SpuUnavailable) as ei:
        run_psi(party, ["x"], config=PsiConfig(protocol="rr22"), timeout_s=1)
    msg = str(ei.value)
    assert "tessera[psi]" in msg and "3.12" in msg and "3.11" in msg and "'ecdh'" in msg
    assert party.transport.stats.snapshot()["messages_sent"] == 0
    a, b = random_sets(9, 40, 40, 0.5)
    out = run_parties({n: (lambda p, ids=ids: run_psi(p, ids, timeout_s=30, workers=0))
                       for n, ids in (("bank", a), ("fintech", b))})
    assert sorted(a[i] for i in out["bank"].rows) == sorted(set(a) & set(b))
    assert np.all(out["bank"].rows != PLACEHOLDER)


@needs_spu
@pytest.mark.slow
def test_resume_after_a_kill_during_spu(certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """threats.md row 21 for spu: fintech is killed while spu runs; bank (with a checkpoint)
    stops its spu worker at once, waits, and when only fintech is restarted both redo the spu
    step (seconds at RR22's speed) and end with the uninterrupted, consistent output. Then a
    party killed after the run, before its output, restarts into the saved result alone."""
    import logging
    import threading

    import psi.spu

    a, b = random_sets(12, 3000, 2000, 0.5)
    net = InMemoryNetwork(list(NAMES))
    lk = links(certs)
    cfg = PsiConfig(protocol="rr22", join="full")
    real_hash = psi.spu.hex_keys
    armed = {"on": True}

    def hash_then_kill(keys: Any) -> Any:
        if armed["on"] and len(keys) == len(b):  # fintech's first run: killed 0.3 s later
            armed["on"] = False
            threading.Timer(0.3, net.disconnect, args=("fintech", "killed (kill -9)")).start()
        return real_hash(keys)

    monkeypatch.setattr(psi.spu, "hex_keys", hash_then_kill)
    out: dict[str, Any] = {}

    def bank() -> None:
        out["bank"] = run_psi(Party("bank", net.transport("bank")), a, config=cfg, link=lk["bank"],
                              checkpoint=tmp_path / "bank", rejoin_s=60, timeout_s=60, keep_result=True)

    caplog.set_level(logging.WARNING, logger="psi.runner")
    th = threading.Thread(target=bank, daemon=True)
    th.start()
    with pytest.raises(ClosedTransport, match="killed"):  # the kill -9 of the fault injection
        run_psi(Party("fintech", net.transport("fintech")), b, config=cfg, link=lk["fintech"],
                checkpoint=tmp_path / "fin", timeout_s=60, keep_result=True)
    out["fintech"] = run_psi(Party("fintech", net.transport("fintech")), b, config=cfg,
                             link=lk["fintech"], checkpoint=tmp_path / "fin", timeout_s=60,
                             keep_result=True)
    th.join(90)
    assert not th.is_alive()
    assert any("waiting up to" in r.message for r in caplog.records)  # bank waited for the rejoin
    check_join_outputs("full", a, b, out["bank"].rows, out["fintech"].rows)
    # killed after the run, before writing its output: the saved result, without any peer
    again = run_psi(Party("fintech", InMemoryNetwork(list(NAMES)).transport("fintech")), b,
                    config=cfg, link=lk["fintech"], checkpoint=tmp_path / "fin", timeout_s=5)
    assert list(again.rows) == list(out["fintech"].rows)


@needs_spu
def test_an_empty_set_gives_empty_results_without_running_spu(certs: Path) -> None:
    """threats.md row 16 for spu (spu 0.9.5 itself aborts on an empty input)."""
    cfg = PsiConfig(protocol="rr22", join="full")
    out = run_two({"bank": [], "fintech": ["a", "b"]}, dict.fromkeys(NAMES, cfg), links(certs))
    assert out["bank"].size == out["fintech"].size == 0
    assert out["bank"].rows.tolist() == [-1, -1] and out["fintech"].rows.tolist() == [0, 1]


@needs_spu
def test_results_that_differ_between_the_parties_fail_both(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if another member of the federation had answered on fintech's PSI endpoint: the
    confirmation over the router catches a different intersection before any output."""
    import threading

    import psi.spu
    from party.errors import RemoteProtocolError

    real = psi.spu.read_keys
    calls = {"n": 0}
    lock = threading.Lock()

    def one_short(path: Path) -> Any:
        with lock:
            calls["n"] += 1
            first = calls["n"] == 1
        got = real(path)
        return got.slice(1) if first else got  # the first party to read its result loses a key

    monkeypatch.setattr(psi.spu, "read_keys", one_short)
    a, b = random_sets(13, 60, 60, 0.5)
    cfg = PsiConfig(protocol="rr22")
    out = run_two({"bank": a, "fintech": b}, dict.fromkeys(NAMES, cfg), links(certs),
                  catch=(RemoteProtocolError, PeerAborted))
    assert all(isinstance(e, (RemoteProtocolError, PeerAborted)) for e in out.values()), out
    assert any(isinstance(e, RemoteProtocolError) and "differs" in str(e) for e in out.values())


@needs_spu
def test_rr22_with_three_parties_says_to_use_ecdh(certs: Path) -> None:
    net = InMemoryNetwork(["a", "b", "c"])
    party = Party("a", net.transport("a"))
    with pytest.raises(ConfigError, match=r"exactly two parties.*'ecdh'"):
        run_psi(party, ["x"], config=PsiConfig(protocol="rr22"), link=links(certs)["bank"], timeout_s=1)
    assert net.transport("a").stats.snapshot()["messages_sent"] == 0


@needs_spu
def test_an_endpoint_whose_port_is_taken_is_named(certs: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        lk = links(certs, timeout_s=5)
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        lk = {n: SpuLink({**lk[n].endpoints, "bank": taken}, lk[n].ca, lk[n].cert, lk[n].key,
                         connect_timeout_s=5) for n in NAMES}
        out = run_two({"bank": ["a", "b"], "fintech": ["b", "c"]},
                      dict.fromkeys(NAMES, PsiConfig(protocol="rr22")), lk, catch=(ConfigError, PeerAborted))
    assert isinstance(out["bank"], ConfigError) and taken in str(out["bank"]) and "in use" in str(out["bank"])
    assert isinstance(out["fintech"], PeerAborted | ConfigError)


def test_psi_endpoints_come_from_the_federation_toml(tmp_path: Path) -> None:
    from party.config import load_federation

    base = '[federation]\nname = "t"\nrouter = "127.0.0.1:1"\n[tls]\nca = "certs/ca.pem"\n'
    (tmp_path / "fed.toml").write_text(
        base + '[parties.bank]\nrole = "active"\npsi_endpoint = "10.0.0.5:61001"\n'
        '[parties.fintech]\nrole = "passive"\n')
    fed = load_federation(tmp_path / "fed.toml")
    link = SpuLink.from_federation(fed, "bank")
    assert link.endpoint("bank") == "10.0.0.5:61001"
    assert link.ca.is_absolute() and link.cert.is_absolute() and link.key.is_absolute()  # spu wants them
    with pytest.raises(ConfigError, match=r"\[parties.fintech\].psi_endpoint is not set"):
        link.endpoint("fintech")
    (tmp_path / "bad.toml").write_text(base + '[parties.bank]\nrole = "active"\npsi_endpoint = "nohost"\n')
    with pytest.raises(ConfigError, match=r"psi_endpoint.*not a host:port"):
        load_federation(tmp_path / "bad.toml")
