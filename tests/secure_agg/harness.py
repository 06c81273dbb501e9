"""Drive SecAgg clients and server directly (no network), with dropouts and tampering."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secure_agg import SecAggClient, SecAggParams, SecAggResult, SecAggServer

STAGES = ("advertise_keys", "share_keys", "masked_input", "unmask")

#: hook(stage, outbox) -> outbox : lets a test rewrite server->client messages
Hook = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class Harness:
    """n clients with random vectors and weights, run through the four stages in memory."""

    n: int
    params: SecAggParams
    seed: int = 0
    session: str = "s"
    round: int = 0
    xs: dict[str, np.ndarray] = field(init=False)
    weights: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.ids = [f"c{i:03d}" for i in range(self.n)]
        d = self.params.vector_length
        self.xs = {u: rng.normal(0, 1, d).astype(np.float32) for u in self.ids}
        self.weights = {u: int(rng.integers(1, 100)) for u in self.ids}
        self.clients = {
            u: SecAggClient(u, params=self.params, session=self.session, round=self.round,
                            rng=np.random.default_rng(self.seed + i))
            for i, u in enumerate(self.ids)
        }
        self.server = SecAggServer(self.ids, params=self.params, session=self.session,
                                   round=self.round, graph_seed=bytes(range(32)))

    def unmask_requests(self) -> dict[str, Any]:
        """The first three stages with every client (weight 1): the server's unmask requests."""
        adv = self.server.advertise_keys({u: c.advertise_keys() for u, c in self.clients.items()})
        fwd = self.server.share_keys({u: self.clients[u].share_keys(adv[u]) for u in self.ids})
        reqs: dict[str, Any] = self.server.masked_input(
            {u: self.clients[u].masked_input(fwd[u], self.xs[u], weight=1) for u in self.ids})
        return reqs

    def run(
        self,
        drop: Mapping[str, str] | None = None,
        *,
        hook: Hook | None = None,
        client_hook: Hook | None = None,
    ) -> SecAggResult:
        """Run a round. ``drop[u] = stage`` makes u silent from that stage on."""
        drop = dict(drop or {})
        gone: set[str] = set()
        inbox: dict[str, Any] = {}
        out: Any = None
        for stage in STAGES:
            gone |= {u for u, s in drop.items() if s == stage}
            msgs: dict[str, Any] = {}
            for u in self.server.alive:
                if u in gone:
                    continue
                c = self.clients[u]
                if stage == "advertise_keys":
                    msgs[u] = c.advertise_keys()
                elif u not in inbox:
                    continue  # excluded by the server
                elif stage == "share_keys":
                    msgs[u] = c.share_keys(inbox[u])
                elif stage == "masked_input":
                    msgs[u] = c.masked_input(inbox[u], self.xs[u], weight=self.weights[u])
                else:
                    msgs[u] = c.unmask(inbox[u])
            if client_hook is not None:
                msgs = client_hook(stage, msgs)
            out = getattr(self.server, stage)(msgs)
            if stage != "unmask":
                inbox = hook(stage, out) if hook is not None else out
        assert isinstance(out, SecAggResult)
        return out

    def plain_sum(self, members: list[str]) -> tuple[np.ndarray, float]:
        vec = sum(self.weights[u] * np.clip(self.xs[u].astype(np.float64), -self.params.clip,
                                            self.params.clip) for u in members)
        return np.asarray(vec), float(sum(self.weights[u] for u in members))

    def check(self, res: SecAggResult) -> None:
        """The result equals the plain weighted sum of the survivors within quantisation error."""
        vec, w = self.plain_sum(res.survivors)
        assert res.total_weight == w
        tol = self.params.step * w  # each of Σw weighted terms errs by < one step
        np.testing.assert_allclose(res.sum, vec, rtol=0, atol=tol)
        np.testing.assert_allclose(res.mean, vec / w, rtol=0, atol=self.params.step)
