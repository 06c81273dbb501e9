"""Every message of a split-training run has its own tag (one slot per batch and step).

Regression: ``Tag(..., epoch, "t7").at("act")`` replaced the step, so all batches of an
epoch shared ``vfl/<session>/<epoch>/act`` and the run worked only because queues are FIFO.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from party import InMemoryNetwork, Party, Role
from tests.vfl.test_trainer import cfg, ok, run
from vfl.split import default_active, default_passive
from vfl.trainer import ActiveTrainer, PassiveTrainer


def _spy(net: InMemoryNetwork, name: str, seen: list[str]) -> Any:
    """``name``'s transport, recording the tag of every message it receives."""
    tr = net.transport(name)
    real_recv = tr.recv

    def recv(src: str, tag: Any, *, timeout_s: float) -> Any:
        seen.append(str(tag))
        return real_recv(src, tag, timeout_s=timeout_s)

    tr.recv = recv  # type: ignore[method-assign]
    return tr


@pytest.mark.parametrize("mode", ["plaintext", "he"])
def test_each_batch_message_has_its_own_tag(data_dir: Path, mode: str) -> None:
    g = np.loadtxt(data_dir / "fate" / "default_credit_hetero_guest.csv", delimiter=",",
                   skiprows=1, max_rows=160)
    h = np.loadtxt(data_dir / "fate" / "default_credit_hetero_host.csv", delimiter=",",
                   skiprows=1, max_rows=160)
    xa, y, xp = g[:120, 2:], g[:120, 1], h[:, 1:]
    c = cfg(mode, epochs=2, batch_size=32, eval_batch_size=16)  # several batches per epoch
    net = InMemoryNetwork(["bank", "fintech"])
    to_bank: list[str] = []
    to_fin: list[str] = []
    tb, tf = _spy(net, "bank", to_bank), _spy(net, "fintech", to_fin)

    def bank(party: Party, _net: InMemoryNetwork) -> Any:
        t = ActiveTrainer(Party("bank", tb, role=Role.ACTIVE), ["fintech"],
                          default_active(xa.shape[1], hidden=8, d=4, k=3), xa, y, config=c)
        t.fit()
        return t.predict(g[120:, 2:])

    def fin(party: Party, _net: InMemoryNetwork) -> Any:
        t = PassiveTrainer(Party("fintech", tf, role=Role.PASSIVE), "bank",
                           default_passive(xp.shape[1], hidden=8, d=4), xp[:120], config=c)
        t.fit()
        t.predict(xp[120:])
        return t

    ok(run({"bank": bank, "fintech": fin}, {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}))
    for who, seen in (("bank", to_bank), ("fintech", to_fin)):
        repeated = {t: n for t, n in Counter(seen).items() if n > 1}
        assert not repeated, f"{who} received several messages under one tag: {repeated}"
    # training steps, validation batches and scoring batches each carry their index
    assert "vfl/vfl/0/t0/act" in to_bank and "vfl/vfl/0/t1/act" in to_bank
    assert "vfl/vfl/1/v1/act" in to_bank and "vfl.score/vfl/0/s1/act" in to_bank
    assert "vfl/vfl/0/t1/grad" in to_fin
