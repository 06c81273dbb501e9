"""SecAgg / SecAgg+ state machines run directly (no network): correctness under
dropouts at every stage, clean aborts, and every refusal of threats.md rows 1-9."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest

from party.errors import LocalProtocolError, QuorumLost, RemoteProtocolError
from secure_agg import (
    ClientAborted,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    ServerStage,
    ShareDecryptionError,
    Stage,
)
from secure_agg.client import TRANSITIONS
from secure_agg.messages import MaskedInput, UnmaskRequest

from .harness import STAGES, Harness

D = 64


def _params(n: int, mode: str = "secagg", **kw: Any) -> SecAggParams:
    return SecAggParams(num_clients=n, vector_length=D, mode=mode, **kw)


# ---- correctness ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
def test_no_dropouts_equals_plain_weighted_sum(mode: str) -> None:
    h = Harness(20 if mode == "secagg+" else 8, _params(20 if mode == "secagg+" else 8, mode))
    res = h.run()
    assert res.survivors == h.ids and res.dropped == {}
    h.check(res)


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
@pytest.mark.parametrize("stage", STAGES)
def test_30_percent_dropouts_at_each_stage(mode: str, stage: str) -> None:
    # threats rows 1-3: 6 of 20 clients go silent from `stage` on
    h = Harness(20, _params(20, mode, dropout_fraction=0.3), seed=3)
    gone = h.ids[2:20:3]
    assert len(gone) == 6
    res = h.run(dict.fromkeys(gone, stage))
    h.check(res)
    if stage == "unmask":
        # they sent y before vanishing: their inputs are in the sum (row 2)
        assert res.survivors == h.ids and res.dropped == {}
        assert set(res.responders) == set(h.ids) - set(gone)
    else:
        assert set(res.survivors) == set(h.ids) - set(gone)
        assert res.dropped == dict.fromkeys(gone, stage)


def test_dropouts_equal_to_n_minus_threshold() -> None:
    p = _params(20, "secagg", dropout_fraction=0.45)
    assert p.t == 11
    h = Harness(20, p, seed=4)
    res = h.run(dict.fromkeys(h.ids[:9], "masked_input"))
    assert len(res.survivors) == 11
    h.check(res)


def test_dropouts_spread_over_all_stages_secagg_plus() -> None:
    p = _params(40, "secagg+", dropout_fraction=0.2)
    h = Harness(40, p, seed=5)
    drop = {h.ids[0]: "advertise_keys", h.ids[7]: "share_keys", h.ids[13]: "masked_input",
            h.ids[21]: "masked_input", h.ids[30]: "unmask"}
    res = h.run(drop)
    h.check(res)
    assert len(res.survivors) == 36  # the one silent at unmask is still in the sum


@pytest.mark.parametrize("stage", STAGES)
def test_below_threshold_aborts_cleanly_at_each_stage(stage: str) -> None:
    # threats row 4: 5 clients, t = 3; 3 go silent -> 2 left
    h = Harness(5, _params(5))
    with pytest.raises(QuorumLost, match="fewer than"):
        h.run(dict.fromkeys(h.ids[:3], stage))
    assert h.server.stage is ServerStage.ABORTED
    with pytest.raises(LocalProtocolError):
        h.server.unmask({})  # nothing more can be extracted from an aborted round
    # the next round starts fresh and completes
    h2 = Harness(5, _params(5), round=1)
    h2.check(h2.run())


def test_secagg_plus_abort_when_one_clients_holders_are_lost() -> None:
    # every survivor count is above t, but one client's own holders are not
    p = _params(30, "secagg+", neighbours=6, dropout_fraction=0.1)
    h = Harness(30, p)
    h.run()  # same graph seed in every Harness: learn the graph
    nbrs = h.server._nbrs
    victim = h.ids[0]
    holders = sorted(nbrs[victim])[: p.holders - p.t + 1]
    h2 = Harness(30, p)
    with pytest.raises(QuorumLost, match=r"surviving share holders|fewer than"):
        h2.run(dict.fromkeys([victim, *holders], "masked_input"))


# ---- stage order -----------------------------------------------------------------------


def test_every_out_of_order_call_is_refused() -> None:
    p = _params(4)
    for method, stage in itertools.product(TRANSITIONS, Stage):
        if stage in TRANSITIONS[method]:
            continue
        c = SecAggClient("c000", params=p, session="s")
        c.stage = stage
        args: list[Any] = [] if method == "advertise_keys" else [None]
        if method == "masked_input":
            args += [np.zeros(D)]
        with pytest.raises(LocalProtocolError, match=f"{method}\\(\\) needs stage"):
            getattr(c, method)(*args)


# ---- replay, tampering, malformed input (threats row 9) ----------------------------------


def test_public_keys_from_another_round_are_refused() -> None:
    a = Harness(4, _params(4), round=1)
    b = Harness(4, _params(4), round=2)
    old = a.server.advertise_keys({u: c.advertise_keys() for u, c in a.clients.items()})
    c = b.clients["c000"]
    c.advertise_keys()
    with pytest.raises(ClientAborted, match="out-of-round"):
        c.share_keys(old["c000"])
    assert c.stage is Stage.ABORTED


def test_server_excludes_messages_of_another_session() -> None:
    h = Harness(6, _params(6))

    def replay(stage: str, msgs: dict[str, Any]) -> dict[str, Any]:
        if stage == "masked_input":
            msgs["c001"] = dataclasses.replace(msgs["c001"], session="old")
        return msgs

    res = h.run(client_hook=replay)
    assert "c001" not in res.survivors and "out-of-round" in h.server.rejected["c001"]
    h.check(res)


def _tamper_forwarded(victim: str, how: str) -> Any:
    def hook(stage: str, out: dict[str, Any]) -> dict[str, Any]:
        if stage == "share_keys":
            m = out[victim]
            cts = m.ciphertexts.copy()
            if how == "flip":
                cts[0, 30] ^= 1
                out[victim] = dataclasses.replace(m, ciphertexts=cts)
            elif how == "swap":  # two peers' ciphertexts exchanged: AAD names the wrong src
                out[victim] = dataclasses.replace(m, ciphertexts=cts[[1, 0, *range(2, len(cts))]])
        return out

    return hook


@pytest.mark.parametrize("how", ["flip", "swap"])
def test_tampered_share_ciphertext_aborts_the_client(how: str) -> None:
    h = Harness(6, _params(6))
    with pytest.raises(ShareDecryptionError, match="failed authentication"):
        h.run(hook=_tamper_forwarded("c002", how))
    assert h.clients["c002"].stage is Stage.ABORTED


def test_share_ciphertext_replayed_from_previous_round_fails() -> None:
    a = Harness(4, _params(4), round=0)
    b = Harness(4, _params(4), round=1)
    captured: dict[str, Any] = {}

    def keep(stage: str, out: dict[str, Any]) -> dict[str, Any]:
        if stage == "share_keys":
            captured.update(out)
        return out

    a.run(hook=keep)

    def replay(stage: str, out: dict[str, Any]) -> dict[str, Any]:
        if stage == "share_keys":
            old = captured["c000"]
            out["c000"] = dataclasses.replace(out["c000"], ciphertexts=old.ciphertexts.copy())
        return out

    with pytest.raises(ShareDecryptionError):
        b.run(hook=replay)


def test_wrong_vector_length_is_a_clear_error_on_both_sides() -> None:
    h = Harness(5, _params(5))

    def short(stage: str, msgs: dict[str, Any]) -> dict[str, Any]:
        if stage == "masked_input":
            m = msgs["c003"]
            msgs["c003"] = MaskedInput(session=m.session, round=m.round, y=m.y[:-2].copy())
        return msgs

    res = h.run(client_hook=short)
    assert "c003" not in res.survivors and "expected uint64(65,)" in h.server.rejected["c003"]
    h.check(res)
    c = Harness(5, _params(5)).clients["c000"]
    with pytest.raises(ValueError, match=r"shape \(64,\)"):
        c.masked_input(None, np.zeros(D + 1))  # type: ignore[arg-type]


# ---- contradictory unmask requests (threats rows 5 and 6) -------------------------------


def _edit_at(at: str, victim: str, edit: Any) -> Any:
    """A Harness hook: after stage ``at``, the server's message to ``victim`` is ``edit(msg)``."""
    def hook(stage: str, out: dict[str, Any]) -> dict[str, Any]:
        if stage == at:
            out[victim] = edit(out[victim])
        return out

    return hook


def _both_lists(req: UnmaskRequest) -> UnmaskRequest:
    v = next(u for u in req.survivors if u != "c001")
    return dataclasses.replace(req, dropped=[*req.dropped, v])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_both_lists, "both survived and dropped"),  # row 5
        (lambda r: dataclasses.replace(r, survivors=[u for u in r.survivors if u != "c001"],
                                       dropped=["c001"]), "this client as dropped"),  # row 6
        (lambda r: dataclasses.replace(r, survivors=[*r.survivors, "zz-unknown"]),
         "not a neighbour"),
        (lambda r: dataclasses.replace(r, survivors=[*r.survivors, r.survivors[-1]]), "twice"),
        (lambda r: dataclasses.replace(r, dropped=["c000"]), "never shared"),  # dead at round 1
        (lambda r: dataclasses.replace(r, survivors=["c001", "c002"]), "below threshold"),
    ],
)
def test_client_refuses_contradictory_unmask_request(edit: Any, match: str) -> None:
    h = Harness(7, _params(7))
    with pytest.raises(ClientAborted, match=match):
        # c000 dropped before sharing keys, so it is a legitimate "never shared" case
        h.run({"c000": "share_keys"}, hook=_edit_at("masked_input", "c001", edit))
    assert h.clients["c001"].stage is Stage.ABORTED
    assert h.clients["c001"]._held == {}  # secrets wiped


def test_malicious_server_listing_one_client_in_both_lists_gets_nothing() -> None:
    # threats row 5: every honest client aborts; the server never holds both secrets
    h = Harness(6, _params(6))
    reqs = h.unmask_requests()
    aborted = 0
    for u in h.ids:
        r = reqs[u]
        evil = dataclasses.replace(r, dropped=["c005"] if u != "c005" else ["c004"])
        try:
            h.clients[u].unmask(evil)
        except ClientAborted:
            aborted += 1
    assert aborted == len(h.ids)


def test_second_unmask_request_is_refused() -> None:
    # a server asking first for the b-shares, then for the mask-key shares of the same peer
    h = Harness(5, _params(5))
    reqs = h.unmask_requests()
    c = h.clients["c000"]
    first = c.unmask(reqs["c000"])
    assert "c001" in first.survivors
    again = UnmaskRequest(session="s", round=0, survivors=["c000", "c002", "c003"],
                          dropped=["c001"])
    with pytest.raises(LocalProtocolError, match="needs stage MASKED"):
        c.unmask(again)


# ---- roster checks (threats row 8) ------------------------------------------------------


def _dup_key(m: Any) -> Any:
    enc = m.enc_public.copy()
    enc[2] = enc[3]
    return dataclasses.replace(m, enc_public=enc)


def _wrong_echo(m: Any) -> Any:
    msk = m.mask_public.copy()
    msk[m.clients.index("c001")] ^= 1
    return dataclasses.replace(m, mask_public=msk)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_dup_key, "identical"),
        (_wrong_echo, "echoed"),
        (lambda m: dataclasses.replace(
            m, clients=[c if c != "c001" else "c099" for c in m.clients]), "does not include"),
        # threats row 12: a roster of two (the server dropped everyone else) is refused
        (lambda m: dataclasses.replace(
            m, clients=m.clients[:2], enc_public=m.enc_public[:2].copy(),
            mask_public=m.mask_public[:2].copy()), "below max"),
    ],
)
def test_client_refuses_bad_roster(edit: Any, match: str) -> None:
    h = Harness(5, _params(5))
    with pytest.raises(ClientAborted, match=match):
        h.run(hook=_edit_at("advertise_keys", "c001", edit))


def test_server_rejects_duplicate_advertised_keys() -> None:
    h = Harness(6, _params(6))

    def dup(stage: str, msgs: dict[str, Any]) -> dict[str, Any]:
        if stage == "advertise_keys":
            msgs["c004"] = msgs["c003"]
        return msgs

    res = h.run(client_hook=dup)
    assert "c004" not in res.survivors and "identical" in h.server.rejected["c004"]


def test_server_checks_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        SecAggServer(["a", "a", "b"], params=_params(3), session="s")
    with pytest.raises(ValueError, match="num_clients"):
        SecAggServer(["a", "b", "c", "d"], params=_params(3), session="s")


def test_a_wrong_unmask_share_is_detected_not_silently_summed() -> None:
    h = Harness(7, _params(7))

    def lie(stage: str, msgs: dict[str, Any]) -> dict[str, Any]:
        if stage == "unmask":
            m = msgs["c004"]
            rows = m.self_mask_shares.copy()
            rows[0, -1] ^= 1
            msgs["c004"] = dataclasses.replace(m, self_mask_shares=rows)
        return msgs

    with pytest.raises(RemoteProtocolError, match=r"inconsistent|not a 32-byte"):
        h.run(client_hook=lie)
    assert h.server.stage is ServerStage.ABORTED


def test_abort_logs_reasons_but_no_key_material(caplog: pytest.LogCaptureFixture) -> None:
    # threats row 4: a clean abort leaves no key material in the logs
    import logging
    import re

    caplog.set_level(logging.DEBUG)
    h = Harness(5, _params(5))
    secrets: list[bytes] = []

    def spy(stage: str, out: dict[str, Any]) -> dict[str, Any]:
        if stage == "share_keys":
            for c in h.clients.values():
                if c._mask is not None and c._b is not None:
                    secrets.extend([c._mask.secret, c._b])
        return out

    with pytest.raises(QuorumLost):
        h.run(dict.fromkeys(h.ids[:3], "unmask"), hook=spy)
    text = caplog.text
    assert "aborted" in text
    assert secrets and not any(s.hex() in text or repr(s) in text for s in secrets)
    assert not re.search(r"[0-9a-f]{64}", text)
