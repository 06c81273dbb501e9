"""The HFL server: rounds of sampling, fit, aggregation and evaluation over a :class:`Party`.

The strategy is driven through Flower's legacy interface: ``configure_fit``
samples :class:`~hfl.server.client_proxy.ClientProxy` handles from the server's
:class:`PartyClientManager` and ``aggregate_fit`` gets
``list[tuple[ClientProxy, FitRes]]``. Each proxy is a thin handle naming one client
party; the instructions travel as tessera's codec messages (:mod:`hfl.messages`).

One round (``Server.run_round``):

1. collect ``Hello``\\ s: which clients are connected (and under which incarnation);
2. the strategy samples clients (the manager's generator is seeded by ``(seed,
   round)``, so a resumed or re-run server samples the same clients) and gives each
   a ``FitIns``;
3. send the instructions; wait for replies until the round timeout; clients that do
   not answer in time or disconnect are dropped as stragglers;
4. reject replies with the wrong number/shape of arrays, NaN/inf or no examples,
   with a logged reason: they never reach the aggregate (they are failures);
5. aggregate (plain: the strategy's ``aggregate_fit`` sees each result;
   ``secure_agg``: the server gets only Σ n_k Δ_k and Σ n_k from SecAgg+ and the
   strategy's ``aggregate_mean`` sees the weighted mean);
6. central evaluation (``strategy.evaluate``) and federated evaluation;
7. history (JSON, PNG) and the global model are written atomically; a restarted
   server resumes after the last completed round.

``Server(client_manager=..., strategy=...)`` without a party is Flower's server:
it drives any ``ClientProxy`` objects registered with that manager through
:func:`fit_clients` / :func:`evaluate_clients`.

What the server learns: with plain aggregation each sampled client's trained
model; with ``secure_agg`` only the weighted sum of the updates of the clients
that finished, plus each client's example count and reported metrics.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hfl import common
from hfl import messages as wire
from hfl.checkpoint import load_latest, save_round
from hfl.common import describe_mismatch
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import OK
from hfl.history import History
from hfl.server.client_manager import ClientManager
from hfl.server.client_proxy import ClientProxy
from hfl.server.flower_clients import (
    EvaluateResultsAndFailures,
    FitResultsAndFailures,
    evaluate_client,
    evaluate_clients,
    failure_reason,
    fit_client,
    fit_clients,
)
from hfl.server.party_clients import (
    ClientFailure,
    NotEnoughClients,
    PartyClientManager,
    PartyClientProxy,
    PartyClients,
    check_evaluate,
    check_fit,
)
from hfl.server.secure_round import check_secure_strategy, secure_aggregate, secure_settings
from hfl.server.server_config import ServerConfig
from hfl.server.strategy import Strategy
from hfl.server.strategy.aggregate import cast_like
from party import ConfigError, Party, RemoteProtocolError, TesseraError

log = logging.getLogger("hfl.server")


class Server(PartyClients):
    """Drives federated training from one :class:`Party` (in memory or over gRPC).

    Args:
        party: the server's side of the federation (omit it for Flower's
            ``Server(client_manager=..., strategy=...)`` over your own proxies).
        strategy: the aggregation rule (default FedAvg).
        client_manager: Flower's argument; only without ``party``.
        clients: names of the client parties (default: every peer but the router).
        secure_agg: False, True, or a dict of secure aggregation settings
            (``threshold``, ``neighbours``, ``clip``, ``timeout_s`` ...) for SecAgg+.
        checkpoint_dir: checkpoint every round there; resume from it when it holds one.
        output_dir: write ``history.json`` each round and ``history.png`` at the end.
        seed: client sampling seed (rounds sample with ``(seed, round)``).
        progress: show a tqdm progress bar.
        wait_for_clients_s: how long sampling waits for ``min_available_clients``.
        min_clients_at_start: wait for this many clients before anything else (a
            simulation waits for all, so client sampling is reproducible).
        stop_condition: called with the history after each round; True ends training
            early (e.g. a target accuracy was reached).
    """

    def __init__(
        self,
        party: Party | None = None,
        strategy: Strategy | None = None,
        *,
        client_manager: ClientManager | None = None,
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
        from hfl.server.strategy import FedAvg

        if party is None and client_manager is None:
            raise TypeError("Server needs a party (tessera) or client_manager= (Flower's signature)")
        if party is not None and client_manager is not None:
            raise ConfigError("Server over a party manages its clients itself: pass party or "
                              "client_manager, not both")
        self.party = party
        self.strategy: Strategy = strategy if strategy is not None else FedAvg()
        self.max_workers: int | None = None
        self.clients: list[str] = []
        if party is not None:
            self.clients = sorted(clients if clients is not None else
                                  [p for p in party.peers if p != "router"])
            if not self.clients:
                raise ConfigError("the federation has no client parties")
            self._client_manager: ClientManager = PartyClientManager(self)
        else:
            assert client_manager is not None
            self._client_manager = client_manager
        self.secure_agg = secure_settings(secure_agg, party, self.strategy, num_clients=len(self.clients))
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
        self.parameters: common.NDArrays | None = None
        self._incarnation: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self.handshake_timeout_s = 30.0

    # -- Flower's Server methods -------------------------------------------------------------
    def set_max_workers(self, max_workers: int | None) -> None:
        """Set the max_workers used by ThreadPoolExecutor (Flower-style proxies only)."""
        self.max_workers = max_workers

    def set_strategy(self, strategy: Strategy) -> None:
        """Replace the server strategy."""
        if self.secure_agg is not None:
            check_secure_strategy(strategy)
        self.strategy = strategy

    def client_manager(self) -> ClientManager:
        """Return ClientManager."""
        return self._client_manager

    # -- rounds ------------------------------------------------------------------------------
    def _min_available(self) -> int:
        return max(1, int(getattr(self.strategy, "min_available_clients", 1)))

    def _reseed(self, *key: int) -> None:
        if isinstance(self._client_manager, PartyClientManager):
            self._client_manager.rng = np.random.default_rng([self.seed, *key])

    def initial_parameters(self, timeout_s: float) -> common.NDArrays:
        init = self.strategy.initialize_parameters(client_manager=self._client_manager)
        if init is not None:
            return [np.asarray(a) for a in parameters_to_ndarrays(init)]
        if self.party is None:
            proxy = self._client_manager.sample(1)[0]
            res = proxy.get_parameters(common.GetParametersIns(config={}), timeout=timeout_s, group_id=0)
            if res.status.code != common.Code.OK:
                raise TesseraError(f"could not get initial parameters from client {proxy.cid}: "
                                   f"{res.status.message}")
            return parameters_to_ndarrays(res.parameters)
        avail = self.wait_for_clients(self._min_available())
        c = avail[0]
        replies, failures = self.ask([(c, wire.GetParametersIns({}))], timeout_s)
        r = replies.get(c)
        if not isinstance(r, wire.GetParametersRes):
            why = failures.get(c) or (r.message if isinstance(r, wire.Failure) else f"sent {type(r).__name__}")
            raise TesseraError(f"could not get initial parameters from client {c}: {why}")
        bad = next((f"array {i} has NaN/inf" for i, a in enumerate(r.parameters)
                    if a.dtype.kind == "f" and not np.isfinite(a).all()), None)
        if bad:
            raise RemoteProtocolError(f"initial parameters rejected: {bad}", peer=c)
        log.info("initial parameters from client %s", c)
        return [np.array(a) for a in r.parameters]

    def _instructions(self, plan: Sequence[tuple[ClientProxy, common.FitIns | common.EvaluateIns]],
                      parameters: common.Parameters,
                      params: common.NDArrays, make: Callable[[common.NDArrays, dict[str, Any]], Any],
                      ) -> tuple[list[tuple[str, Any]], dict[str, common.NDArrays]]:
        """The wire instruction for each client of ``plan``, and the arrays each was sent.

        One message object per distinct (parameters, config), so :meth:`ask` encodes it
        once; the round's model (``parameters``, whose arrays are ``params``) is not
        decoded again.
        """
        msgs: dict[tuple[int, str], Any] = {}
        decoded: dict[int, common.NDArrays] = {id(parameters): params}
        instructions: list[tuple[str, Any]] = []
        sent: dict[str, common.NDArrays] = {}
        for proxy, ins in plan:
            key_p = id(ins.parameters)
            if key_p not in decoded:
                decoded[key_p] = parameters_to_ndarrays(ins.parameters)
            arrays = decoded[key_p]
            key = (id(arrays), repr(sorted(ins.config.items())))
            if key not in msgs:
                msgs[key] = make(arrays, dict(ins.config))
            instructions.append((proxy.cid, msgs[key]))
            sent[proxy.cid] = arrays
        return instructions, sent

    def _party_plan(self, plan: Sequence[tuple[ClientProxy, Any]]) -> bool:
        return all(isinstance(p, PartyClientProxy) and p._server is self for p, _ in plan)

    def run_round(self, rnd: int, params: common.NDArrays, timeout_s: float) -> common.NDArrays:
        """Run round ``rnd`` from global ``params``; returns the new global model."""
        t0 = time.monotonic()
        record: dict[str, Any] = {"round": rnd}
        if self.party is not None:
            self.poll_clients()
        parameters = ndarrays_to_parameters(params)
        self._reseed(rnd)
        plan = self.strategy.configure_fit(server_round=rnd, parameters=parameters,
                                           client_manager=self._client_manager)
        record["fit_clients"] = [p.cid for p, _ in plan]
        t_fit = time.monotonic()
        new: common.NDArrays | None = None
        fit_metrics: common.Metrics = {}
        n_results = 0
        failures_by: dict[str, str] = {}
        if plan:
            if self.party is not None and self._party_plan(plan):
                results_w, failures_by = self._fit_party(rnd, plan, parameters, params, timeout_s)
                record["fit_s"] = round(time.monotonic() - t_fit, 4)
                n_results = len(results_w)
                t_agg = time.monotonic()
                new_p, fit_metrics = self._aggregate(rnd, params, results_w, failures_by, record)
            else:
                if self.secure_agg is not None:
                    raise ConfigError("secure_agg works only with the server's own client proxies")
                results, failures = fit_clients(plan, self.max_workers, timeout_s, rnd)
                record["fit_s"] = round(time.monotonic() - t_fit, 4)
                n_results = len(results)
                failures_by = dict(failure_reason(f) for f in failures)
                t_agg = time.monotonic()
                new_p, fit_metrics = self.strategy.aggregate_fit(rnd, results, failures)
            record["aggregate_s"] = round(time.monotonic() - t_agg, 4)
            if new_p is not None:
                new_arrays = parameters_to_ndarrays(new_p) if isinstance(new_p, common.Parameters) else list(new_p)
                bad = describe_mismatch(params, new_arrays)
                if bad is not None:
                    log.error("round %d: aggregate rejected (%s); the model is unchanged", rnd, bad)
                    record["aggregate_rejected"] = bad
                else:
                    new = cast_like(new_arrays, params)
        else:
            record["fit_s"] = 0.0
            record["aggregate_s"] = 0.0
            log.warning("round %d: configure_fit chose no clients; the model is unchanged", rnd)
        if new is not None:
            params = new
        record["fit_results"] = n_results
        record["fit_failures"] = dict(sorted(failures_by.items()))
        if plan:
            self.history.add_metrics_distributed_fit(server_round=rnd, metrics=fit_metrics)
        t_eval = time.monotonic()
        self._evaluate(rnd, params, timeout_s, record)
        record["evaluate_s"] = round(time.monotonic() - t_eval, 4)
        record["time_s"] = round(time.monotonic() - t0, 4)
        self.history.rounds.append(record)
        return params

    def _fit_party(self, rnd: int, plan: Sequence[tuple[ClientProxy, common.FitIns]],
                   parameters: common.Parameters,
                   params: common.NDArrays, timeout_s: float,
                   ) -> tuple[list[tuple[ClientProxy, wire.FitRes]], dict[str, str]]:
        session, sa = "", {}
        if self.secure_agg is not None:
            from hfl.secure import round_params

            session = self._session(rnd)
            sa = self._secagg_round = round_params(
                self.secure_agg, num_clients=max(3, len(plan)),
                dim=sum(int(a.size) for a in params), client_timeout_s=timeout_s + 300.0)
        instructions, sent_arrays = self._instructions(
            plan, parameters, params, lambda arrays, config: wire.FitIns(arrays, config, session, sa))
        replies, fail = self.ask(instructions, timeout_s)
        by_cid = {p.cid: p for p, _ in plan}
        results: list[tuple[ClientProxy, wire.FitRes]] = []
        for c in sorted(replies):
            why = check_fit(replies[c], sent_arrays[c], self.secure_agg is not None)
            if why is None:
                results.append((by_cid[c], replies[c]))
            else:
                fail[c] = f"rejected: {why}"
                log.warning("round %d: client %s %s", rnd, c, fail[c])
        return results, fail

    def _aggregate(self, rnd: int, params: common.NDArrays,
                   results: list[tuple[ClientProxy, wire.FitRes]],
                   fail: dict[str, str], record: dict[str, Any],
                   ) -> tuple[common.Parameters | common.NDArrays | None, common.Metrics]:
        if self.secure_agg is None:
            flower_results = [(p, common.FitRes(OK, ndarrays_to_parameters(r.parameters),
                                                r.num_examples, dict(r.metrics)))
                              for p, r in results]
            failures: list[tuple[ClientProxy, common.FitRes] | BaseException] = [
                ClientFailure(c, why) for c, why in sorted(fail.items())]
            return self.strategy.aggregate_fit(rnd, flower_results, failures)
        return secure_aggregate(self._party(), self.strategy, rnd, params, results, fail, record,
                                session=self._session(rnd), round_params=self._secagg_round,
                                dp_rounds_done=len(self.history.metrics_distributed_fit.get("dp_epsilon", [])))

    def _session(self, rnd: int) -> str:
        return f"{self.run_id}-r{rnd}"

    def _evaluate(self, rnd: int, params: common.NDArrays, timeout_s: float, record: dict[str, Any]) -> None:
        parameters = ndarrays_to_parameters(params)
        central = self.strategy.evaluate(rnd, parameters=parameters)
        if central is not None:
            loss, metrics = central
            self.history.add_loss_centralized(server_round=rnd, loss=loss)
            self.history.add_metrics_centralized(server_round=rnd, metrics=metrics)
            record["central"] = {"loss": loss, **metrics}
        if self.party is not None:
            self.poll_clients()
        self._reseed(rnd, 1)
        plan = self.strategy.configure_evaluate(server_round=rnd, parameters=parameters,
                                                client_manager=self._client_manager)
        if not plan:
            return
        if self.party is not None and self._party_plan(plan):
            results, fail = self._evaluate_party(plan, parameters, params, timeout_s)
            failures: list[tuple[ClientProxy, common.EvaluateRes] | BaseException] = [
                ClientFailure(c, why) for c, why in sorted(fail.items())]
        else:
            results, failures = evaluate_clients(plan, self.max_workers, timeout_s, rnd)
            fail = dict(failure_reason(f) for f in failures)
        loss_d, metrics_d = self.strategy.aggregate_evaluate(rnd, results, failures)
        if loss_d is not None:
            self.history.add_loss_distributed(server_round=rnd, loss=loss_d)
            self.history.add_metrics_distributed(server_round=rnd, metrics=metrics_d)
            record["distributed"] = {"loss": loss_d, **metrics_d}
        if fail:
            record["evaluate_failures"] = fail

    def _evaluate_party(self, plan: Sequence[tuple[ClientProxy, common.EvaluateIns]],
                        parameters: common.Parameters,
                        params: common.NDArrays, timeout_s: float,
                        ) -> tuple[list[tuple[ClientProxy, common.EvaluateRes]], dict[str, str]]:
        instructions, _ = self._instructions(plan, parameters, params, wire.EvaluateIns)
        replies, fail = self.ask(instructions, timeout_s)
        by_cid = {p.cid: p for p, _ in plan}
        results: list[tuple[ClientProxy, common.EvaluateRes]] = []
        for c in sorted(replies):
            r = replies[c]
            why = check_evaluate(r)
            if why is None:
                results.append((by_cid[c], common.EvaluateRes(OK, r.loss, r.num_examples, dict(r.metrics))))
            else:
                fail[c] = why
        return results, fail

    # -- the whole run -----------------------------------------------------------------------
    def fit(self, num_rounds: int, timeout: float | None = None) -> History:
        """Train for ``num_rounds`` (resuming after a checkpoint's round); returns the history.

        A Flower-style server (``Server(client_manager=...)``, no party) returns
        Flower's ``(history, elapsed_seconds)`` instead; over a party the elapsed time
        of each round is in ``history.rounds[i]["time_s"]``.
        """
        t_start = time.monotonic()
        timeout_s = self._timeout(timeout)
        start = 1
        if self.min_clients_at_start and self.party is not None:
            self.wait_for_clients(self.min_clients_at_start)
        ckpt = load_latest(self.checkpoint_dir) if self.checkpoint_dir else None
        attach = getattr(self.strategy, "_hfl_attach", None)
        if ckpt is not None:
            params = ckpt.parameters
            self.strategy.load_state_dict(ckpt.strategy_state)
            if attach is not None:
                attach(params)
            self.history = History.from_dict(ckpt.history)
            start = ckpt.round + 1
            log.info("resumed after round %d from %s", ckpt.round, self.checkpoint_dir)
        else:
            params = self.initial_parameters(timeout_s)
            if attach is not None:
                attach(params)
            central = self.strategy.evaluate(0, parameters=ndarrays_to_parameters(params))
            if central is not None:
                self.history.add_loss_centralized(server_round=0, loss=central[0])
                self.history.add_metrics_centralized(server_round=0, metrics=central[1])
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
        if self.party is None:  # Flower's signature, Flower's return value
            return self.history, time.monotonic() - t_start  # type: ignore[return-value]
        return self.history

    def disconnect_all_clients(self, timeout: float | None) -> None:
        """Send shutdown signal to all clients (Flower's name)."""
        if self.party is not None:
            self.shutdown("disconnect requested")
            return
        for proxy in list(self._client_manager.all().values()):
            try:
                proxy.reconnect(common.ReconnectIns(seconds=None), timeout=timeout, group_id=None)
            except Exception as e:  # a proxy's own transport error: log, go on
                log.warning("reconnect %s failed: %s", proxy.cid, e)

    def shutdown(self, reason: str = "training finished") -> None:
        """Tell every connected client to leave its loop."""
        self.poll_clients()
        self.ask([(c, wire.Shutdown(reason)) for c in list(self._incarnation)], 0.0, expect_reply=False)


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


#: Flower's code imports these from ``flwr.server.server``.
__all__ = [
    "ClientFailure",
    "EvaluateResultsAndFailures",
    "FitResultsAndFailures",
    "NotEnoughClients",
    "PartyClientManager",
    "PartyClientProxy",
    "Server",
    "ServerConfig",
    "evaluate_client",
    "evaluate_clients",
    "fit_client",
    "fit_clients",
]
