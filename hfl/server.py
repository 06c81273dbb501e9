"""The HFL server: rounds of sampling, fit, aggregation and evaluation over a :class:`Party`.

One round (``Server.run_round``):

1. collect ``Hello``\\ s: which clients are connected (and under which incarnation);
2. the strategy samples clients (seeded by ``(seed, round)``, so a resumed or
   re-run server samples the same clients) and gives each a fit config;
3. send ``FitIns``; wait for replies until the round timeout; clients that do not
   answer in time or disconnect are dropped as stragglers;
4. reject replies with the wrong number/shape of arrays, NaN/inf or no examples,
   with a logged reason: they never reach the aggregate;
5. aggregate (plain: the strategy sees each result; ``secure_agg``: the server gets
   only Σ n_k Δ_k and Σ n_k from SecAgg+ and the strategy sees the weighted mean);
6. central evaluation (``evaluate_fn``) and federated evaluation;
7. history (JSON, PNG) and the global model are written atomically; a restarted
   server resumes after the last completed round.

What the server learns: with plain aggregation each sampled client's trained
model; with ``secure_agg`` only the weighted sum of the updates of the clients
that finished, plus each client's example count and reported metrics.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfl import strategy as strategy  # Flower's ``fl.server.strategy.FedAvg`` spelling
from hfl.checkpoint import load_latest, save_round
from hfl.common import Metrics, NDArrays, describe_mismatch
from hfl.deploy import server_party
from hfl.history import History
from hfl.messages import (
    HELLO_TAG,
    PROTOCOL,
    EvaluateIns,
    EvaluateRes,
    Failure,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    Hello,
    Shutdown,
)
from hfl.strategy.aggregate import cast_like, unflatten
from hfl.strategy.base import Failures, Strategy
from party import (
    ClosedTransport,
    ConfigError,
    Party,
    PartyTimeout,
    PartyUnavailable,
    QuorumLost,
    RemoteProtocolError,
    Tag,
    TesseraError,
    encode,
)
from party.handshake import open_run

log = logging.getLogger("hfl.server")


class NotEnoughClients(TesseraError):
    """Fewer clients connected than the strategy's ``min_available_clients`` in time."""


@dataclass
class ServerConfig:
    """Flower's ``ServerConfig``: rounds, and the per-round timeout in seconds (None: 1 h)."""

    num_rounds: int = 1
    round_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.num_rounds < 0:
            raise ValueError(f"num_rounds must be >= 0, got {self.num_rounds}")
        if self.round_timeout is not None and self.round_timeout <= 0:
            raise ValueError(f"round_timeout must be > 0, got {self.round_timeout}")


class Server:
    """Drives federated training from one :class:`Party` (in memory or over gRPC).

    Args:
        party: the server's side of the federation.
        strategy: the aggregation rule (default FedAvg).
        clients: names of the client parties (default: every peer but the router).
        secure_agg: False, True, or a dict of secure aggregation settings
            (``threshold``, ``neighbours``, ``clip``, ``timeout_s`` ...) for SecAgg+.
        checkpoint_dir: checkpoint every round there; resume from it when it holds one.
        output_dir: write ``history.json`` each round and ``history.png`` at the end.
        seed: client sampling seed (rounds sample with ``(seed, round)``).
        progress: show a tqdm progress bar.
        wait_for_clients_s: how long a round waits for ``min_available_clients``.
        min_clients_at_start: wait for this many clients before anything else (a
            simulation waits for all, so client sampling is reproducible).
        stop_condition: called with the history after each round; True ends training
            early (e.g. a target accuracy was reached).
    """

    def __init__(
        self,
        party: Party,
        strategy: Strategy | None = None,
        *,
        clients: Sequence[str] | None = None,
        secure_agg: bool | Mapping[str, Any] = False,
        checkpoint_dir: str | Path | None = None,
        output_dir: str | Path | None = None,
        seed: int = 0,
        progress: bool = False,
        wait_for_clients_s: float = 120.0,
        min_clients_at_start: int = 0,
        stop_condition: Callable[[History], bool] | None = None,
    ) -> None:
        from hfl.strategy import FedAvg

        self.party = party
        self.strategy = strategy if strategy is not None else FedAvg()
        self.clients = sorted(clients if clients is not None else
                              [p for p in party.peers if p != "router"])
        if not self.clients:
            raise ConfigError("the federation has no client parties")
        self.secure_agg: dict[str, Any] | None = (
            None if secure_agg is False else ({} if secure_agg is True else dict(secure_agg))
        )
        if self.secure_agg is not None:
            if not self.strategy.supports_secure_aggregation:
                raise ConfigError(
                    f"secure_agg needs a strategy that aggregates a weighted sum; "
                    f"{type(self.strategy).__name__} does not implement aggregate_mean"
                )
            from hfl.secure import check_settings

            # too few clients for secure aggregation is a start-up error, never a silent skip
            self.secure_agg = check_settings(self.secure_agg, num_clients=len(self.clients),
                                             context=f"server {party.name!r}")
        self._secagg_round: dict[str, Any] = {}
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.output_dir = Path(output_dir) if output_dir else None
        self.seed = seed
        self.progress = progress
        self.wait_for_clients_s = wait_for_clients_s
        self.min_clients_at_start = min_clients_at_start
        self.stop_condition = stop_condition
        self.run_id = uuid.uuid4().hex[:12]  # fresh per server start: fresh SecAgg sessions
        self.history = History()
        self.parameters: NDArrays | None = None
        self._incarnation: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self.handshake_timeout_s = 30.0

    # -- client bookkeeping ----------------------------------------------------------------
    def poll_clients(self) -> list[str]:
        """Read pending Hellos (latest wins), forget clients the transport reports gone,
        and return the connected clients, sorted."""
        for c in self.clients:
            latest: Hello | None = None
            while True:
                try:
                    # unpinned: a restarted client's hello comes from its new incarnation
                    latest = self.party.recv(c, HELLO_TAG, Hello, timeout_s=0, pinned=False)
                except PartyTimeout:
                    break
                except PartyUnavailable as e:  # the transport knows it is gone
                    self._lost(c, str(e))
                    latest = None
                    break
                except RemoteProtocolError as e:
                    log.warning("ignoring a malformed hello from %s: %s", c, e)
                    continue
            if latest is None:
                continue
            try:  # the session handshake with this client incarnation (see hfl.client)
                open_run(self.party, [c], protocol=PROTOCOL, session=latest.incarnation,
                         timeout_s=self.handshake_timeout_s)
            except (PartyTimeout, PartyUnavailable, RemoteProtocolError) as e:
                self._lost(c, f"session handshake failed: {e}")
                continue
            if self._incarnation.get(c) != latest.incarnation:
                log.info("client %s connected (incarnation %s)", c, latest.incarnation)
            self._incarnation[c] = latest.incarnation
            self._seq[c] = 0
        return sorted(self._incarnation)

    def wait_for_clients(self, n: int, timeout_s: float | None = None) -> list[str]:
        """Block until ``n`` clients are connected; raises NotEnoughClients after the timeout."""
        timeout_s = self.wait_for_clients_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            avail = self.poll_clients()
            if len(avail) >= n:
                return avail
            if time.monotonic() > deadline:
                raise NotEnoughClients(
                    f"only {len(avail)} of the required {n} clients connected within "
                    f"{timeout_s:g} s (connected: {', '.join(avail) or 'none'})"
                )
            time.sleep(0.05)

    def _lost(self, c: str, why: str) -> None:
        if self._incarnation.pop(c, None) is not None:
            log.warning("client %s lost: %s", c, why)
        self._seq.pop(c, None)

    def ask(self, instructions: Sequence[tuple[str, Any]], timeout_s: float, *,
            expect_reply: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
        """Send one instruction per client; collect replies until ``timeout_s`` passes.

        Returns (replies by client, failures by client with the reason). Each
        distinct message object is encoded once, however many clients get it.
        """
        sent: list[tuple[str, Tag]] = []
        failures: dict[str, str] = {}
        encoded: dict[int, bytearray] = {}
        for c, msg in instructions:
            inc = self._incarnation.get(c)
            if inc is None:
                failures[c] = "not connected"
                continue
            tag = Tag(PROTOCOL, inc, self._seq[c], "ins")
            data = encoded.get(id(msg))
            if data is None:
                data = encoded[id(msg)] = encode(msg)
            try:
                self.party.transport.send(c, tag, data)
            except PartyUnavailable as e:
                failures[c] = f"disconnected ({e.reason})"
                self._lost(c, str(e))
                continue
            self._seq[c] += 1
            sent.append((c, tag))
        replies: dict[str, Any] = {}
        if not expect_reply:
            return replies, failures
        deadline = time.monotonic() + timeout_s
        for c, tag in sent:
            try:
                replies[c] = self.party.recv(c, tag.at("res"), timeout_s=max(0.0, deadline - time.monotonic()))
            except PartyTimeout:
                failures[c] = f"straggler: no reply within the round timeout of {timeout_s:g} s"
                log.warning("client %s dropped: %s", c, failures[c])
            except PartyUnavailable as e:
                failures[c] = f"disconnected mid-round ({e.reason})"
                self._lost(c, str(e))
            except RemoteProtocolError as e:
                failures[c] = f"malformed reply: {e}"
                log.warning("client %s: %s", c, failures[c])
        return replies, failures

    # -- rounds ------------------------------------------------------------------------------
    def _timeout(self, round_timeout: float | None) -> float:
        return 3600.0 if round_timeout is None else float(round_timeout)

    def initial_parameters(self, timeout_s: float) -> NDArrays:
        init = self.strategy.initialize_parameters()
        if init is not None:
            return [np.asarray(a) for a in init]
        avail = self.wait_for_clients(max(1, self.strategy.num_available_required()))
        c = avail[0]
        replies, failures = self.ask([(c, GetParametersIns({}))], timeout_s)
        r = replies.get(c)
        if not isinstance(r, GetParametersRes):
            why = failures.get(c) or (r.message if isinstance(r, Failure) else f"sent {type(r).__name__}")
            raise TesseraError(f"could not get initial parameters from client {c}: {why}")
        bad = next((f"array {i} has NaN/inf" for i, a in enumerate(r.parameters)
                    if a.dtype.kind == "f" and not np.isfinite(a).all()), None)
        if bad:
            raise RemoteProtocolError(f"initial parameters rejected: {bad}", peer=c)
        log.info("initial parameters from client %s", c)
        return [np.array(a) for a in r.parameters]

    def _check_fit(self, c: str, r: Any, params: NDArrays, secure: bool) -> str | None:
        if isinstance(r, Failure):
            return f"client error: {r.message}"
        if not isinstance(r, FitRes):
            return f"sent {type(r).__name__} instead of FitRes"
        if r.num_examples <= 0:
            return f"num_examples is {r.num_examples}"
        if secure:
            return None if not r.parameters else "sent parameters in the clear during secure aggregation"
        return describe_mismatch(params, r.parameters)

    def run_round(self, rnd: int, params: NDArrays, timeout_s: float) -> NDArrays:
        """Run round ``rnd`` from global ``params``; returns the new global model."""
        t0 = time.monotonic()
        record: dict[str, Any] = {"round": rnd}
        avail = self.wait_for_clients(self.strategy.num_available_required())
        rng = np.random.default_rng([self.seed, rnd])
        plan = self.strategy.configure_fit(rnd, params, avail, rng)
        record["fit_clients"] = [c for c, _ in plan]
        session, sa = "", {}
        if self.secure_agg is not None:
            from hfl.secure import round_params

            session = self._session(rnd)
            sa = self._secagg_round = round_params(
                self.secure_agg, num_clients=max(3, len(plan)),
                dim=sum(int(a.size) for a in params), client_timeout_s=timeout_s + 300.0)
        msgs: dict[str, FitIns] = {}
        for _c, cfg in plan:  # share one message object between identical configs (encode once)
            key = repr(sorted(cfg.items()))
            if key not in msgs:
                msgs[key] = FitIns(params, cfg, session, sa)
        t_fit = time.monotonic()
        replies, fail = self.ask([(c, msgs[repr(sorted(cfg.items()))]) for c, cfg in plan], timeout_s)
        record["fit_s"] = round(time.monotonic() - t_fit, 4)
        results: list[tuple[str, FitRes]] = []
        for c in sorted(replies):
            why = self._check_fit(c, replies[c], params, self.secure_agg is not None)
            if why is None:
                results.append((c, replies[c]))
            else:
                fail[c] = f"rejected: {why}"
                log.warning("round %d: client %s %s", rnd, c, fail[c])
        failures: Failures = sorted(fail.items())
        t_agg = time.monotonic()
        new, fit_metrics = self._aggregate(rnd, params, results, failures, record)
        record["aggregate_s"] = round(time.monotonic() - t_agg, 4)
        if new is not None:
            bad = describe_mismatch(params, new)
            if bad is not None:
                log.error("round %d: aggregate rejected (%s); the model is unchanged", rnd, bad)
                record["aggregate_rejected"] = bad
                new = None
        if new is not None:
            params = new
        record["fit_results"] = len(results)
        record["fit_failures"] = dict(failures)
        self.history.add_metrics_distributed_fit(rnd, fit_metrics)
        t_eval = time.monotonic()
        self._evaluate(rnd, params, avail, timeout_s, record)
        record["evaluate_s"] = round(time.monotonic() - t_eval, 4)
        record["time_s"] = round(time.monotonic() - t0, 4)
        self.history.rounds.append(record)
        return params

    def _aggregate(self, rnd: int, params: NDArrays, results: list[tuple[str, FitRes]],
                   failures: Failures, record: dict[str, Any]) -> tuple[NDArrays | None, Metrics]:
        if self.secure_agg is None:
            return self.strategy.aggregate_fit(rnd, results, failures)
        from hfl.secure import release_clients, server_round

        cohort = sorted(c for c, _ in results)
        late = sorted(c for c, _ in failures if c not in cohort)
        if len(cohort) < 3:
            record["secure_agg"] = f"skipped: {len(cohort)} clients finished training, need >= 3"
            log.error("round %d: secure aggregation needs >= 3 clients, %d finished; model "
                      "unchanged", rnd, len(cohort))
            release_clients(self.party, cohort + late, session=self._session(rnd),
                            reason=record["secure_agg"])
            return None, {}
        release_clients(self.party, late, session=self._session(rnd),
                        reason="dropped from this round (late or failed)")
        try:
            total_vec, total_n, survivors, dropped = server_round(
                self.party, cohort, session=self._session(rnd), params=self._secagg_round)
        except QuorumLost as e:
            record["secure_agg"] = f"aborted: {e}"
            log.error("round %d: secure aggregation aborted (%s); model unchanged", rnd, e)
            return None, {}
        record["secure_agg"] = {"survivors": len(survivors), "dropped": dropped}
        if total_n <= 0:
            return None, {}
        mean_delta = unflatten(total_vec / total_n, params)
        mean = [np.asarray(p, np.float64) + d for p, d in zip(params, mean_delta, strict=True)]
        alive = set(survivors)
        metrics = [(r.num_examples, r.metrics) for c, r in results if c in alive]
        new, agg = self.strategy.aggregate_mean(rnd, mean, int(total_n), metrics)
        return (None if new is None else cast_like(new, params)), agg

    def _session(self, rnd: int) -> str:
        return f"{self.run_id}-r{rnd}"

    def _evaluate(self, rnd: int, params: NDArrays, avail: list[str], timeout_s: float,
                  record: dict[str, Any]) -> None:
        central = self.strategy.evaluate(rnd, params)
        if central is not None:
            loss, metrics = central
            self.history.add_loss_centralized(rnd, loss)
            self.history.add_metrics_centralized(rnd, metrics)
            record["central"] = {"loss": loss, **metrics}
        rng = np.random.default_rng([self.seed, rnd, 1])
        avail = [c for c in avail if c in self._incarnation]
        plan = self.strategy.configure_evaluate(rnd, params, avail, rng)
        if not plan:
            return
        msgs: dict[str, EvaluateIns] = {}
        for _c, cfg in plan:
            msgs.setdefault(repr(sorted(cfg.items())), EvaluateIns(params, cfg))
        replies, fail = self.ask([(c, msgs[repr(sorted(cfg.items()))]) for c, cfg in plan], timeout_s)
        results: list[tuple[str, EvaluateRes]] = []
        for c in sorted(replies):
            r = replies[c]
            if isinstance(r, EvaluateRes) and r.num_examples >= 0 and np.isfinite(r.loss):
                results.append((c, r))
            else:
                fail[c] = r.message if isinstance(r, Failure) else f"bad evaluate reply {r!r:.80}"
        loss_d, metrics_d = self.strategy.aggregate_evaluate(rnd, results, sorted(fail.items()))
        if loss_d is not None:
            self.history.add_loss_distributed(rnd, loss_d)
            record["distributed"] = {"loss": loss_d, **metrics_d}
        self.history.add_metrics_distributed(rnd, metrics_d)
        if fail:
            record["evaluate_failures"] = fail

    # -- the whole run -----------------------------------------------------------------------
    def fit(self, num_rounds: int, timeout: float | None = None) -> History:
        """Train for ``num_rounds`` (resuming after a checkpoint's round); returns the history."""
        timeout_s = self._timeout(timeout)
        start = 1
        if self.min_clients_at_start:
            self.wait_for_clients(self.min_clients_at_start)
        ckpt = load_latest(self.checkpoint_dir) if self.checkpoint_dir else None
        if ckpt is not None:
            params = ckpt.parameters
            self.strategy.load_state_dict(ckpt.strategy_state)
            self.history = History.from_dict(ckpt.history)
            start = ckpt.round + 1
            log.info("resumed after round %d from %s", ckpt.round, self.checkpoint_dir)
        else:
            params = self.initial_parameters(timeout_s)
            central = self.strategy.evaluate(0, params)
            if central is not None:
                self.history.add_loss_centralized(0, central[0])
                self.history.add_metrics_centralized(0, central[1])
        self.parameters = params
        bar = _progress(num_rounds, start - 1, self.progress)
        try:
            for rnd in range(start, num_rounds + 1):
                params = self.run_round(rnd, params, timeout_s)
                self.parameters = params
                if self.checkpoint_dir is not None:
                    save_round(self.checkpoint_dir, rnd, params, self.strategy.state_dict(),
                               self.history.to_dict())
                if self.output_dir is not None:
                    self.history.save(self.output_dir, plot=False)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(_postfix(self.history.rounds[-1]), refresh=False)
                if self.stop_condition is not None and self.stop_condition(self.history):
                    log.info("stop condition met after round %d", rnd)
                    break
        finally:
            if bar is not None:
                bar.close()
        if self.output_dir is not None:
            self.history.save(self.output_dir, plot=True)
        self.history.parameters = params
        return self.history

    def shutdown(self, reason: str = "training finished") -> None:
        """Tell every connected client to leave its loop."""
        self.poll_clients()
        self.ask([(c, Shutdown(reason)) for c in list(self._incarnation)], 0.0, expect_reply=False)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="hfl rounds", unit="round")


def _postfix(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": rec.get("fit_results"), "failed": len(rec.get("fit_failures", {}))}
    for scope in ("central", "distributed"):
        for k, v in rec.get(scope, {}).items():
            if isinstance(v, float):
                out[f"{scope[0]}_{k}"] = f"{v:.4g}"
    return out


def start_server(
    *,
    server_address: str | None = None,
    config: ServerConfig | None = None,
    strategy: Strategy | None = None,
    federation: str | Path | None = None,
    name: str | None = None,
    secure_agg: bool | Mapping[str, Any] = False,
    checkpoint_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    host_router: bool = True,
    seed: int = 0,
    progress: bool = True,
    wait_for_clients_s: float = 300.0,
    min_clients_at_start: int = 0,
    **_flower_kwargs: Any,
) -> History:
    """Run the server over gRPC with mutual TLS (Flower's ``start_server``, plus ours).

    Args:
        server_address: where the router listens (``host:port``); overrides
            ``[federation].listen``. With ``host_router=False`` the router named in
            the federation file must already run (``python -m party.router``).
        config: rounds and per-round timeout.
        strategy: aggregation rule (default FedAvg).
        federation: the federation TOML (CA, router and party certificates); defaults
            to ``$TESSERA_FEDERATION``.
        name: this server's party name (default: the ``role = "server"`` party).
        secure_agg, checkpoint_dir, output_dir, seed, progress, wait_for_clients_s,
        min_clients_at_start: as for :class:`Server`.

    Returns:
        The training :class:`History` (``history.parameters`` is the final model).
    """
    config = config or ServerConfig()
    with server_party(server_address=server_address, federation=federation, name=name,
                      host_router=host_router) as (party, clients):
        server = Server(party, strategy, clients=clients, secure_agg=secure_agg,
                        checkpoint_dir=checkpoint_dir, output_dir=output_dir, seed=seed,
                        progress=progress, wait_for_clients_s=wait_for_clients_s,
                        min_clients_at_start=min_clients_at_start)
        history = server.fit(config.num_rounds, config.round_timeout)
        server.shutdown()
        time.sleep(0.5)  # let the router deliver the Shutdowns before it stops
        return history


__all__ = ["ClosedTransport", "NotEnoughClients", "Server", "ServerConfig", "start_server", "strategy"]
