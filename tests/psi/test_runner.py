"""run_psi over party.Party: in memory (threads), a disconnecting peer, and once over gRPC."""

from __future__ import annotations

import random
import threading

import pytest

from party import InMemoryNetwork, Party
from party.errors import PartyTimeout, PartyUnavailable
from party.testing import run_parties
from psi import IdError, PsiConfig, run_psi
from tests.psi.helpers import shuffled_pair


def _sets(seed: int, na: int, nb: int, shared: int) -> tuple[list[str], list[str]]:
    return shuffled_pair(random.Random(seed), [f"c{i}" for i in range(shared)], na, nb)


def _bank_in_a_thread(
    net: InMemoryNetwork, a: list[str], cfg: PsiConfig, tmp_path, out: dict[str, object],
    *, daemon: bool = False,
) -> tuple[threading.Thread, list[tuple[object, bytes]]]:
    """Starts the bank's resumable run in a thread, over a transport that records every chain
    chunk the bank sends the fintech; returns the thread and that (growing) record."""
    sent_to_fintech: list[tuple[object, bytes]] = []
    bank_transport = net.transport("bank")
    real_send = bank_transport.send

    def spy_send(dst: str, tag, payload) -> None:  # type: ignore[no-untyped-def]
        if dst == "fintech" and "chain:" in tag.step:
            sent_to_fintech.append((tag, bytes(payload)))
        real_send(dst, tag, payload)

    bank_transport.send = spy_send  # type: ignore[method-assign]

    def bank() -> None:
        out["bank"] = run_psi(Party("bank", bank_transport), a, config=cfg, workers=0,
                              checkpoint=tmp_path / "bank", rejoin_s=30, timeout_s=30)

    th = threading.Thread(target=bank, daemon=daemon)
    th.start()
    return th, sent_to_fintech


def _fintech_run(net: InMemoryNetwork, b: list[str], cfg: PsiConfig, tmp_path) -> object:
    """One incarnation of the fintech's resumable run (a fresh transport each time)."""
    return run_psi(Party("fintech", net.transport("fintech")), b, config=cfg, workers=0,
                   checkpoint=tmp_path / "fin", timeout_s=30)


def test_in_memory_two_parties_with_normalisation() -> None:
    a, b = _sets(1, 300, 500, 120)
    b = [f"  {x.upper()}\r\n" for x in b]  # same customers, other spelling
    cfg = PsiConfig(chunk_points=100)
    out = run_parties({
        "bank": lambda p: run_psi(p, a, config=cfg, timeout_s=30, workers=0),
        "fintech": lambda p: run_psi(p, b, config=cfg, timeout_s=30, workers=0),
    })
    got_a = [a[i] for i in out["bank"].rows]
    got_b = [b[i].strip().lower() for i in out["fintech"].rows]
    assert got_a == got_b
    assert set(got_a) == {f"c{i}" for i in range(120)}
    assert out["fintech"].normalize.case_folded == 500


def test_worker_processes_give_the_same_result() -> None:
    a, b = _sets(2, 3000, 2500, 1000)
    cfg = PsiConfig(chunk_points=1024)
    out = run_parties({
        "bank": lambda p: run_psi(p, a, config=cfg, timeout_s=60, workers=2),
        "fintech": lambda p: run_psi(p, b, config=cfg, timeout_s=60, workers=0),
    })
    assert [a[i] for i in out["bank"].rows] == [b[i] for i in out["fintech"].rows]
    assert len(out["bank"].rows) == 1000


def test_duplicates_refused_before_any_message() -> None:
    net = InMemoryNetwork(["bank", "fintech"])
    party = Party("bank", net.transport("bank"))
    with pytest.raises(IdError, match="1 of 3 rows repeat"):
        run_psi(party, ["x", "y", "X"], timeout_s=1)
    assert party.transport.stats.snapshot()["messages_sent"] == 0


def test_peer_disconnecting_mid_run_gives_a_clear_error() -> None:
    """threats: a peer that dies during the chain stage -> PartyUnavailable at once, no hang."""
    net = InMemoryNetwork(["bank", "fintech"])
    a = [f"id{i}" for i in range(400)]
    bank = Party("bank", net.transport("bank"))
    fintech = Party("fintech", net.transport("fintech"))
    errors: dict[str, BaseException] = {}

    def bank_run() -> None:
        try:
            run_psi(bank, a, config=PsiConfig(chunk_points=50), timeout_s=30, workers=0)
        except BaseException as e:
            errors["bank"] = e

    t = threading.Thread(target=bank_run)
    t.start()
    # the fintech says hello, then dies before sending its set
    from party.handshake import open_run
    from party.transport import Tag
    from psi.messages import Hello
    from psi.protocol import PsiSession
    from psi.runner import run_steps

    s = PsiSession("fintech", ["bank", "fintech"], [b"x"], PsiConfig(chunk_points=50))
    run = open_run(fintech, protocol="psi", session="psi", info={"psi": s.public}, timeout_s=10)
    at = run_steps(Tag("psi", "psi", 0), run.run_id)
    for snd in s.hello():
        fintech.send(snd.dst, at(snd.step), snd.msg)
    fintech.recv("bank", at("hello"), Hello, timeout_s=10)
    net.disconnect("fintech")
    t.join(20)
    assert not t.is_alive()
    assert isinstance(errors.get("bank"), PartyUnavailable)
    assert "fintech" in str(errors["bank"])


def test_silent_peer_times_out() -> None:
    net = InMemoryNetwork(["bank", "fintech"])
    bank = Party("bank", net.transport("bank"))
    with pytest.raises(PartyTimeout, match="fintech"):
        run_psi(bank, ["a"], timeout_s=0.3, workers=0)


@pytest.mark.grpc
def test_over_grpc_three_parties() -> None:
    from party.grpc_transport import connect
    from party.testing import grpc_federation

    r = random.Random(3)
    universe = [f"u{i}" for i in range(300)]
    sets = {n: r.sample(universe, 200) for n in ("bank", "fintech", "insurer")}
    with grpc_federation(list(sets)) as (config, _router):
        out = run_parties(
            {n: (lambda p, n=n: run_psi(p, sets[n], timeout_s=30, workers=0)) for n in sets},
            make_party=lambda n: connect(config, n),
        )
    expect = set.intersection(*(set(s) for s in sets.values()))
    orders = {n: [sets[n][i] for i in out[n].rows] for n in sets}
    assert set(orders["bank"]) == expect
    assert orders["bank"] == orders["fintech"] == orders["insurer"]


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_parties({
        "bank": lambda p: run_psi(p, ["a", "b"], timeout_s=10, workers=0, progress=True),
        "fintech": lambda p: run_psi(p, ["b"], timeout_s=10, workers=0, progress=False),
    })
    assert out["bank"].size == 1
    assert "psi bank" in capsys.readouterr().err


def test_parties_that_derive_different_session_salts_stop_before_any_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12, case 1: each side mixed other nonces into its salt and both printed '0 shared'."""
    from party.handshake import RunMismatch
    from psi.protocol import PsiSession

    real = PsiSession.salt_proof

    def skewed(self: PsiSession) -> bytes:
        p = real(self)
        return bytes(32) if self.me == "fintech" else p

    monkeypatch.setattr(PsiSession, "salt_proof", skewed)
    monkeypatch.setattr(PsiSession, "own_chunks", lambda self: pytest.fail("points sent"))
    a, b = _sets(3, 50, 50, 20)

    def run(ids: list[str]):
        def f(p: Party) -> object:
            try:
                return run_psi(p, ids, timeout_s=20, workers=0)
            except RunMismatch as e:
                return e
        return f

    out = run_parties({"bank": run(a), "fintech": run(b)})
    assert all(isinstance(r, RunMismatch) and "session salt" in str(r) for r in out.values())


def test_a_party_that_fails_mid_run_fails_its_peer_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12, case 4 (fail fast): the peer used to wait its whole timeout."""
    import time

    from party import PeerAborted
    from psi.protocol import PsiSession

    real = PsiSession.own_chunks

    def broken(self: PsiSession):
        if self.me == "fintech":
            raise OSError("disk full while hashing")
        return real(self)

    monkeypatch.setattr(PsiSession, "own_chunks", broken)
    a, b = _sets(4, 200, 200, 50)
    t0 = time.monotonic()

    def bank(p: Party) -> object:
        try:
            return run_psi(p, a, timeout_s=120, workers=0)
        except PeerAborted as e:
            return e

    def fintech(p: Party) -> object:
        with pytest.raises(OSError):
            run_psi(p, b, timeout_s=120, workers=0)
        return None

    out = run_parties({"bank": bank, "fintech": fintech})
    assert isinstance(out["bank"], PeerAborted) and "disk full" in str(out["bank"])
    assert out["bank"].peer == "fintech" and time.monotonic() - t0 < 20


def test_surviving_party_resumes_on_its_own_when_the_crashed_one_restarts(
    tmp_path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 12, case 5: only the crashed party is restarted; the survivor waits and resumes."""
    from psi.protocol import PsiSession

    a, b = _sets(5, 3000, 2500, 900)
    cfg = PsiConfig(chunk_points=200)
    clean = run_parties({"bank": lambda p: run_psi(p, a, config=cfg, workers=0),
                         "fintech": lambda p: run_psi(p, b, config=cfg, workers=0)})
    net = InMemoryNetwork(["bank", "fintech"])
    real = PsiSession.receive
    calls = {"n": 0}

    def crash_once(self: PsiSession, src: str, step: str, msg: object):
        if self.me == "fintech" and calls["n"] >= 0:
            calls["n"] += 1
            if calls["n"] == 8:  # mid-chain: the fintech process "dies"
                calls["n"] = -1
                net.disconnect("fintech", "killed")
                # the race CI hit: a chunk the bank sends now is held for the fintech's next
                # incarnation; the restarted run must not read it as its own first chunk
                tag, payload = sent_to_fintech[-1]
                net.deliver("bank", "fintech", tag, bytearray(payload))
                raise SystemExit("killed")
        return real(self, src, step, msg)

    monkeypatch.setattr(PsiSession, "receive", crash_once)
    out: dict[str, object] = {}
    th, sent_to_fintech = _bank_in_a_thread(net, a, cfg, tmp_path, out)
    with pytest.raises(SystemExit):
        _fintech_run(net, b, cfg, tmp_path)
    assert calls["n"] == -1
    out["fintech"] = _fintech_run(net, b, cfg, tmp_path)
    th.join(60)
    for name in ("bank", "fintech"):
        assert out[name].size == clean[name].size == 900  # type: ignore[attr-defined]
        assert sorted(out[name].rows) == sorted(clean[name].rows)  # type: ignore[attr-defined]
    # the same customers in the same row order at both parties (the order is per run: scalars)
    assert [a[i] for i in out["bank"].rows] == [b[i] for i in out["fintech"].rows]  # type: ignore[attr-defined]


def test_a_party_killed_after_the_run_but_before_its_output_restarts_into_the_result(tmp_path) -> None:
    """Seen in the soak: the peer had finished and exited, so the restarted party had no one
    to run with. The finished result is kept in the checkpoint until the output is written."""
    import time

    a, b = _sets(6, 400, 300, 120)
    out = run_parties({
        "bank": lambda p: run_psi(p, a, workers=0, checkpoint=tmp_path / "bank", keep_result=True),
        "fintech": lambda p: run_psi(p, b, workers=0, checkpoint=tmp_path / "fin"),
    })
    assert not list((tmp_path / "fin").iterdir())  # without keep_result: emptied on success
    net = InMemoryNetwork(["bank", "fintech"])  # the fintech is gone for good
    t0 = time.monotonic()
    again = run_psi(Party("bank", net.transport("bank")), a, workers=0,
                    checkpoint=tmp_path / "bank", timeout_s=5)
    assert time.monotonic() - t0 < 2 and again.size == out["bank"].size == 120
    assert list(again.rows) == list(out["bank"].rows) and again.run_id == out["bank"].run_id
    assert not list((tmp_path / "bank").iterdir())  # now consumed and cleared
    with pytest.raises(PartyTimeout):  # another input is a new run, not the saved one
        run_psi(Party("bank", net.transport("bank")), a[:-1], workers=0,
                checkpoint=tmp_path / "bank", timeout_s=1, rejoin_s=0)


def test_a_peer_killed_before_the_last_message_rejoins_and_the_finished_survivor_serves_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen in the soak (run 220): the bank had its result and exited; the fintech, killed
    before reading the intersection, restarted alone and waited forever. Now the bank waits
    for the fintech's completion, and both resume from their checkpoints."""
    from psi.protocol import PsiSession

    a, b = _sets(7, 2000, 1500, 600)
    cfg = PsiConfig(chunk_points=200)
    net = InMemoryNetwork(["bank", "fintech"])
    real = PsiSession.receive
    state = {"armed": True}

    def crash(self: PsiSession, src: str, step: str, msg: object):
        if self.me == "fintech" and step == "result" and state["armed"]:
            state["armed"] = False
            net.disconnect("fintech", "killed (kill -9)")
            raise SystemExit("killed")
        return real(self, src, step, msg)

    monkeypatch.setattr(PsiSession, "receive", crash)
    out: dict[str, object] = {}
    th, _ = _bank_in_a_thread(net, a, cfg, tmp_path, out, daemon=True)
    with pytest.raises(SystemExit):
        _fintech_run(net, b, cfg, tmp_path)
    out["fintech"] = _fintech_run(net, b, cfg, tmp_path)
    th.join(60)
    assert out["bank"].size == out["fintech"].size == 600  # type: ignore[attr-defined]
    assert [a[i] for i in out["bank"].rows] == [b[i] for i in out["fintech"].rows]  # type: ignore[attr-defined]
