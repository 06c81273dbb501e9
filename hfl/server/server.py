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

import concurrent.futures
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfl import messages as wire
from hfl.checkpoint import load_latest, save_round
from hfl.common import describe_mismatch, refuse_flower_kwargs
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import (
    OK,
    Code,
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Metrics,
    NDArrays,
    Parameters,
    ReconnectIns,
)
from hfl.deploy import server_party
from hfl.history import History
from hfl.server.client_manager import ClientManager
from hfl.server.client_proxy import ClientProxy
from hfl.server.criterion import Criterion
from hfl.server.strategy import Strategy
from hfl.server.strategy.aggregate import cast_like, unflatten
from party import (
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

FitResultsAndFailures = tuple[list[tuple[ClientProxy, FitRes]], list[tuple[ClientProxy, FitRes] | BaseException]]
EvaluateResultsAndFailures = tuple[
    list[tuple[ClientProxy, EvaluateRes]], list[tuple[ClientProxy, EvaluateRes] | BaseException]]


class NotEnoughClients(TesseraError):
    """Fewer clients connected than the strategy's ``min_available_clients`` in time."""


class ClientFailure(TesseraError):
    """One client's instruction failed this round (straggler, error, rejected reply).

    What a strategy finds in ``failures``: ``cid`` names the client, the message says why.
    """

    def __init__(self, cid: str, reason: str) -> None:
        super().__init__(f"client {cid}: {reason}")
        self.cid = cid
        self.reason = reason


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


# -- the proxy and the manager over a Party -------------------------------------------------
class PartyClientProxy(ClientProxy):
    """A strategy's handle for one client party: its name (``cid``) and the server to ask."""

    def __init__(self, cid: str, server: Server, node_id: int) -> None:
        super().__init__(cid)
        self.node_id = node_id
        self._server = server

    def _one(self, msg: Any, timeout: float | None, kind: type | None = None) -> Any:
        """The client's reply to ``msg`` (of type ``kind`` if given), or ClientFailure."""
        replies, failures = self._server.ask([(self.cid, msg)], self._server._timeout(timeout))
        if self.cid not in replies:
            raise ClientFailure(self.cid, failures.get(self.cid, "no reply"))
        r = replies[self.cid]
        if isinstance(r, wire.Failure):
            raise ClientFailure(self.cid, f"client error: {r.message}")
        if kind is not None and not isinstance(r, kind):
            raise ClientFailure(self.cid, f"sent {type(r).__name__} instead of {kind.__name__}")
        return r

    def get_properties(self, ins: GetPropertiesIns, timeout: float | None,
                       group_id: int | None) -> GetPropertiesRes:
        r = self._one(wire.GetPropertiesIns(dict(ins.config)), timeout, wire.GetPropertiesRes)
        return GetPropertiesRes(OK, dict(r.properties))

    def get_parameters(self, ins: GetParametersIns, timeout: float | None,
                       group_id: int | None) -> GetParametersRes:
        r = self._one(wire.GetParametersIns(dict(ins.config)), timeout, wire.GetParametersRes)
        return GetParametersRes(OK, ndarrays_to_parameters(r.parameters))

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        arrays = parameters_to_ndarrays(ins.parameters)
        r = self._one(wire.FitIns(arrays, dict(ins.config)), timeout)
        why = self._server._check_fit(self.cid, r, arrays, secure=False)
        if why is not None:
            raise ClientFailure(self.cid, f"rejected: {why}")
        return FitRes(OK, ndarrays_to_parameters(r.parameters), r.num_examples, dict(r.metrics))

    def evaluate(self, ins: EvaluateIns, timeout: float | None, group_id: int | None) -> EvaluateRes:
        r = self._one(wire.EvaluateIns(parameters_to_ndarrays(ins.parameters), dict(ins.config)), timeout)
        why = _check_evaluate(r)
        if why is not None:
            raise ClientFailure(self.cid, why)
        return EvaluateRes(OK, r.loss, r.num_examples, dict(r.metrics))

    def reconnect(self, ins: ReconnectIns, timeout: float | None,
                  group_id: int | None) -> DisconnectRes:
        """Tell the client to leave (tessera clients do not come back on a timer)."""
        self._server.ask([(self.cid, wire.Shutdown("reconnect requested"))], 0.0, expect_reply=False)
        return DisconnectRes(reason="RECONNECT")

    def __repr__(self) -> str:
        return f"PartyClientProxy({self.cid!r})"


class PartyClientManager(ClientManager):
    """The connected client parties, as proxies; samples with a seeded generator.

    ``sample`` picks ``num_clients`` distinct clients from the sorted pool with
    ``rng`` (the server reseeds it with ``(seed, round)`` before each configure
    call) and returns them sorted by name. Fewer than ``min_num_clients``
    connected within the server's ``wait_for_clients_s`` is :class:`NotEnoughClients`;
    fewer than ``num_clients`` is an empty sample, as in Flower.
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self.clients: dict[str, ClientProxy] = {}
        self.rng = np.random.default_rng(0)

    def _sync(self, connected: Sequence[str]) -> None:
        for c in list(self.clients):
            if c not in connected:
                del self.clients[c]
        for c in connected:
            if c not in self.clients:
                self.clients[c] = PartyClientProxy(c, self._server, self._server.clients.index(c))

    def num_available(self) -> int:
        return len(self.clients)

    def register(self, client: ClientProxy) -> bool:
        raise ConfigError("clients join a tessera federation by connecting with their party "
                          "certificate; PartyClientManager.register is not available")

    def unregister(self, client: ClientProxy) -> None:
        self.clients.pop(client.cid, None)

    def all(self) -> dict[str, ClientProxy]:
        return self.clients

    def wait_for(self, num_clients: int, timeout: int | float = 86400) -> bool:
        try:
            self._server.wait_for_clients(num_clients, timeout_s=float(timeout))
        except NotEnoughClients:
            return False
        return True

    def sample(self, num_clients: int, min_num_clients: int | None = None,
               criterion: Criterion | None = None) -> list[ClientProxy]:
        if min_num_clients is None:
            min_num_clients = num_clients
        self._server.wait_for_clients(min_num_clients)  # raises NotEnoughClients after the wait
        pool = sorted(self.clients)
        if criterion is not None:
            pool = [c for c in pool if criterion.select(self.clients[c])]
        if num_clients > len(pool):
            log.warning("Sampling failed: number of available clients (%d) is less than number of "
                        "requested clients (%d).", len(pool), num_clients)
            return []
        idx = self.rng.choice(len(pool), size=num_clients, replace=False)
        return [self.clients[c] for c in sorted(pool[i] for i in idx)]


def _check_evaluate(r: Any) -> str | None:
    if isinstance(r, wire.Failure):
        return f"client error: {r.message}"
    if not isinstance(r, wire.EvaluateRes):
        return f"sent {type(r).__name__} instead of EvaluateRes"
    if r.num_examples <= 0:
        return f"num_examples is {r.num_examples}"
    if not np.isfinite(r.loss):
        return f"loss is {r.loss}"
    return None


def _reason(f: tuple[ClientProxy, Any] | BaseException) -> tuple[str, str]:
    if isinstance(f, ClientFailure):
        return f.cid, f.reason
    if isinstance(f, BaseException):
        return "?", f"{type(f).__name__}: {f}"
    proxy, res = f
    return proxy.cid, f"status {res.status.code.name}: {res.status.message}"


class Server:
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
        self.secure_agg: dict[str, Any] | None = (
            None if secure_agg is False else ({} if secure_agg is True else dict(secure_agg))
        )
        if self.secure_agg is not None:
            if party is None:
                raise ConfigError("secure_agg needs a Server over a tessera party")
            self._check_secure_strategy(self.strategy)
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

    @staticmethod
    def _check_secure_strategy(strategy: Strategy) -> None:
        if not strategy.supports_secure_aggregation:
            raise ConfigError(
                f"secure_agg needs a strategy that aggregates a weighted sum; "
                f"{type(strategy).__name__} does not implement aggregate_mean for its "
                "aggregate_fit (a custom aggregate_fit needs every client's model, which secure "
                "aggregation never shows the server): turn secure_agg off or use a built-in rule"
            )

    # -- Flower's Server methods -------------------------------------------------------------
    def set_max_workers(self, max_workers: int | None) -> None:
        """Set the max_workers used by ThreadPoolExecutor (Flower-style proxies only)."""
        self.max_workers = max_workers

    def set_strategy(self, strategy: Strategy) -> None:
        """Replace the server strategy."""
        if self.secure_agg is not None:
            self._check_secure_strategy(strategy)
        self.strategy = strategy

    def client_manager(self) -> ClientManager:
        """Return ClientManager."""
        return self._client_manager

    # -- client bookkeeping ----------------------------------------------------------------
    def _party(self) -> Party:
        if self.party is None:
            raise ConfigError("this Server has no party (it was built with client_manager=)")
        return self.party

    def poll_clients(self) -> list[str]:
        """Read pending Hellos (latest wins), forget clients the transport reports gone,
        and return the connected clients, sorted."""
        party = self._party()
        for c in self.clients:
            latest: wire.Hello | None = None
            while True:
                try:
                    # unpinned: a restarted client's hello comes from its new incarnation
                    latest = party.recv(c, wire.HELLO_TAG, wire.Hello, timeout_s=0, pinned=False)
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
                open_run(party, [c], protocol=wire.PROTOCOL, session=latest.incarnation,
                         timeout_s=self.handshake_timeout_s)
            except (PartyTimeout, PartyUnavailable, RemoteProtocolError) as e:
                self._lost(c, f"session handshake failed: {e}")
                continue
            if self._incarnation.get(c) != latest.incarnation:
                log.info("client %s connected (incarnation %s)", c, latest.incarnation)
            self._incarnation[c] = latest.incarnation
            self._seq[c] = 0
        connected = sorted(self._incarnation)
        if isinstance(self._client_manager, PartyClientManager):
            self._client_manager._sync(connected)
        return connected

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
        if isinstance(self._client_manager, PartyClientManager):
            self._client_manager.clients.pop(c, None)

    def ask(self, instructions: Sequence[tuple[str, Any]], timeout_s: float, *,
            expect_reply: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
        """Send one instruction per client; collect replies until ``timeout_s`` passes.

        Returns (replies by client, failures by client with the reason). Each
        distinct message object is encoded once, however many clients get it.
        """
        party = self._party()
        sent: list[tuple[str, Tag]] = []
        failures: dict[str, str] = {}
        encoded: dict[int, bytearray] = {}
        for c, msg in instructions:
            inc = self._incarnation.get(c)
            if inc is None:
                failures[c] = "not connected"
                continue
            tag = Tag(wire.PROTOCOL, inc, self._seq[c], "ins")
            data = encoded.get(id(msg))
            if data is None:
                data = encoded[id(msg)] = encode(msg)
            try:
                party.transport.send(c, tag, data)
            except PartyUnavailable as e:
                failures[c] = f"disconnected ({e.reason})"
                self._lost(c, str(e))
                continue
            self._seq[c] += 1
            sent.append((c, tag))
        replies: dict[str, Any] = {}
        if not expect_reply:
            return replies, failures
        # one reply tag per send, in send order (collect asks for each once, in that order)
        res_tags = iter([tag.at("res") for _, tag in sent])
        for c, reply, err in party.collect(
                [c for c, _ in sent], lambda _c: next(res_tags), timeout_s=timeout_s,
                catch=(PartyTimeout, PartyUnavailable, RemoteProtocolError)):
            if err is None:
                replies[c] = reply
            elif isinstance(err, PartyTimeout):
                failures[c] = f"straggler: no reply within the round timeout of {timeout_s:g} s"
                log.warning("client %s dropped: %s", c, failures[c])
            elif isinstance(err, PartyUnavailable):
                failures[c] = f"disconnected mid-round ({err.reason})"
                self._lost(c, str(err))
            else:
                failures[c] = f"malformed reply: {err}"
                log.warning("client %s: %s", c, failures[c])
        return replies, failures

    # -- rounds ------------------------------------------------------------------------------
    def _timeout(self, round_timeout: float | None) -> float:
        return 3600.0 if round_timeout is None else float(round_timeout)

    def _min_available(self) -> int:
        return max(1, int(getattr(self.strategy, "min_available_clients", 1)))

    def _reseed(self, *key: int) -> None:
        if isinstance(self._client_manager, PartyClientManager):
            self._client_manager.rng = np.random.default_rng([self.seed, *key])

    def initial_parameters(self, timeout_s: float) -> NDArrays:
        init = self.strategy.initialize_parameters(client_manager=self._client_manager)
        if init is not None:
            return [np.asarray(a) for a in parameters_to_ndarrays(init)]
        if self.party is None:
            proxy = self._client_manager.sample(1)[0]
            res = proxy.get_parameters(GetParametersIns(config={}), timeout=timeout_s, group_id=0)
            if res.status.code != Code.OK:
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

    def _check_fit(self, c: str, r: Any, params: NDArrays, secure: bool) -> str | None:
        if isinstance(r, wire.Failure):
            return f"client error: {r.message}"
        if not isinstance(r, wire.FitRes):
            return f"sent {type(r).__name__} instead of FitRes"
        if r.num_examples <= 0:
            return f"num_examples is {r.num_examples}"
        if secure:
            return None if not r.parameters else "sent parameters in the clear during secure aggregation"
        return describe_mismatch(params, r.parameters)

    def _to_wire(self, ins: FitIns | EvaluateIns, params: Parameters, arrays: NDArrays,
                 cache: dict[int, NDArrays]) -> NDArrays:
        """The arrays of an instruction's Parameters (the round's model is not decoded again)."""
        if ins.parameters is params:
            return arrays
        key = id(ins.parameters)
        if key not in cache:
            cache[key] = parameters_to_ndarrays(ins.parameters)
        return cache[key]

    def _party_plan(self, plan: Sequence[tuple[ClientProxy, Any]]) -> bool:
        return all(isinstance(p, PartyClientProxy) and p._server is self for p, _ in plan)

    def run_round(self, rnd: int, params: NDArrays, timeout_s: float) -> NDArrays:
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
        new: NDArrays | None = None
        fit_metrics: Metrics = {}
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
                failures_by = dict(_reason(f) for f in failures)
                t_agg = time.monotonic()
                new_p, fit_metrics = self.strategy.aggregate_fit(rnd, results, failures)
            record["aggregate_s"] = round(time.monotonic() - t_agg, 4)
            if new_p is not None:
                new_arrays = parameters_to_ndarrays(new_p) if isinstance(new_p, Parameters) else list(new_p)
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

    def _fit_party(self, rnd: int, plan: Sequence[tuple[ClientProxy, FitIns]], parameters: Parameters,
                   params: NDArrays, timeout_s: float,
                   ) -> tuple[list[tuple[ClientProxy, wire.FitRes]], dict[str, str]]:
        session, sa = "", {}
        if self.secure_agg is not None:
            from hfl.secure import round_params

            session = self._session(rnd)
            sa = self._secagg_round = round_params(
                self.secure_agg, num_clients=max(3, len(plan)),
                dim=sum(int(a.size) for a in params), client_timeout_s=timeout_s + 300.0)
        msgs: dict[tuple[int, str], wire.FitIns] = {}
        sent_arrays: dict[str, NDArrays] = {}
        cache: dict[int, NDArrays] = {}
        instructions: list[tuple[str, wire.FitIns]] = []
        for proxy, ins in plan:  # one message object per distinct (parameters, config): encoded once
            arrays = self._to_wire(ins, parameters, params, cache)
            key = (id(arrays), repr(sorted(ins.config.items())))
            if key not in msgs:
                msgs[key] = wire.FitIns(arrays, dict(ins.config), session, sa)
            instructions.append((proxy.cid, msgs[key]))
            sent_arrays[proxy.cid] = arrays
        replies, fail = self.ask(instructions, timeout_s)
        by_cid = {p.cid: p for p, _ in plan}
        results: list[tuple[ClientProxy, wire.FitRes]] = []
        for c in sorted(replies):
            why = self._check_fit(c, replies[c], sent_arrays[c], self.secure_agg is not None)
            if why is None:
                results.append((by_cid[c], replies[c]))
            else:
                fail[c] = f"rejected: {why}"
                log.warning("round %d: client %s %s", rnd, c, fail[c])
        return results, fail

    def _aggregate(self, rnd: int, params: NDArrays, results: list[tuple[ClientProxy, wire.FitRes]],
                   fail: dict[str, str], record: dict[str, Any],
                   ) -> tuple[Parameters | NDArrays | None, Metrics]:
        if self.secure_agg is None:
            flower_results = [(p, FitRes(OK, ndarrays_to_parameters(r.parameters), r.num_examples,
                                         dict(r.metrics))) for p, r in results]
            failures: list[tuple[ClientProxy, FitRes] | BaseException] = [
                ClientFailure(c, why) for c, why in sorted(fail.items())]
            return self.strategy.aggregate_fit(rnd, flower_results, failures)
        from hfl.secure import release_clients, server_round

        party = self._party()
        cohort = sorted(p.cid for p, _ in results)
        late = sorted(c for c in fail if c not in cohort)
        if len(cohort) < 3:
            record["secure_agg"] = f"skipped: {len(cohort)} clients finished training, need >= 3"
            log.error("round %d: secure aggregation needs >= 3 clients, %d finished; model "
                      "unchanged", rnd, len(cohort))
            release_clients(party, cohort + late, session=self._session(rnd),
                            reason=record["secure_agg"])
            return None, {}
        release_clients(party, late, session=self._session(rnd),
                        reason="dropped from this round (late or failed)")
        try:
            total_vec, total_n, survivors, dropped = server_round(
                party, cohort, session=self._session(rnd), params=self._secagg_round)
        except QuorumLost as e:
            record["secure_agg"] = f"aborted: {e}"
            log.error("round %d: secure aggregation aborted (%s); model unchanged", rnd, e)
            return None, {}
        record["secure_agg"] = {"survivors": len(survivors), "dropped": dropped}
        if total_n <= 0:
            return None, {}
        if getattr(self.strategy, "accept_failures", True) is False and (fail or dropped):
            return None, {}
        mean_delta = unflatten(total_vec / total_n, params)
        mean = [np.asarray(p, np.float64) + d for p, d in zip(params, mean_delta, strict=True)]
        mean = cast_like(mean, params) if all(p.dtype.kind == "f" for p in params) else mean
        alive = set(survivors)
        metrics = [(r.num_examples, r.metrics) for p, r in results if p.cid in alive]
        new_p, agg_metrics = self.strategy.aggregate_mean(rnd, mean, int(total_n), metrics)
        if "dp" in self._secagg_round:  # distributed DP: the privacy spent so far
            from hfl.secure import dp_round_metrics

            done = len(self.history.metrics_distributed_fit.get("dp_epsilon", [])) + 1
            agg_metrics = {**agg_metrics, **dp_round_metrics(self._secagg_round, done)}
            log.info("round %d: distributed DP epsilon %.4f in total (delta %g)", rnd,
                     agg_metrics["dp_epsilon"], agg_metrics["dp_delta"])
        return new_p, agg_metrics

    def _session(self, rnd: int) -> str:
        return f"{self.run_id}-r{rnd}"

    def _evaluate(self, rnd: int, params: NDArrays, timeout_s: float, record: dict[str, Any]) -> None:
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
            failures: list[tuple[ClientProxy, EvaluateRes] | BaseException] = [
                ClientFailure(c, why) for c, why in sorted(fail.items())]
        else:
            results, failures = evaluate_clients(plan, self.max_workers, timeout_s, rnd)
            fail = dict(_reason(f) for f in failures)
        loss_d, metrics_d = self.strategy.aggregate_evaluate(rnd, results, failures)
        if loss_d is not None:
            self.history.add_loss_distributed(server_round=rnd, loss=loss_d)
            self.history.add_metrics_distributed(server_round=rnd, metrics=metrics_d)
            record["distributed"] = {"loss": loss_d, **metrics_d}
        if fail:
            record["evaluate_failures"] = fail

    def _evaluate_party(self, plan: Sequence[tuple[ClientProxy, EvaluateIns]], parameters: Parameters,
                        params: NDArrays, timeout_s: float,
                        ) -> tuple[list[tuple[ClientProxy, EvaluateRes]], dict[str, str]]:
        msgs: dict[tuple[int, str], wire.EvaluateIns] = {}
        cache: dict[int, NDArrays] = {}
        instructions: list[tuple[str, wire.EvaluateIns]] = []
        for proxy, ins in plan:
            arrays = self._to_wire(ins, parameters, params, cache)
            key = (id(arrays), repr(sorted(ins.config.items())))
            if key not in msgs:
                msgs[key] = wire.EvaluateIns(arrays, dict(ins.config))
            instructions.append((proxy.cid, msgs[key]))
        replies, fail = self.ask(instructions, timeout_s)
        by_cid = {p.cid: p for p, _ in plan}
        results: list[tuple[ClientProxy, EvaluateRes]] = []
        for c in sorted(replies):
            r = replies[c]
            why = _check_evaluate(r)
            if why is None:
                results.append((by_cid[c], EvaluateRes(OK, r.loss, r.num_examples, dict(r.metrics))))
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
                proxy.reconnect(ReconnectIns(seconds=None), timeout=timeout, group_id=None)
            except Exception as e:  # a proxy's own transport error: log, go on
                log.warning("reconnect %s failed: %s", proxy.cid, e)

    def shutdown(self, reason: str = "training finished") -> None:
        """Tell every connected client to leave its loop."""
        self.poll_clients()
        self.ask([(c, wire.Shutdown(reason)) for c in list(self._incarnation)], 0.0, expect_reply=False)


# -- Flower's module-level helpers --------------------------------------------------------------
def fit_client(client: ClientProxy, ins: FitIns, timeout: float | None,
               group_id: int) -> tuple[ClientProxy, FitRes]:
    """Refine parameters on a single client."""
    fit_res = client.fit(ins, timeout=timeout, group_id=group_id)
    return client, fit_res


def evaluate_client(client: ClientProxy, ins: EvaluateIns, timeout: float | None,
                    group_id: int) -> tuple[ClientProxy, EvaluateRes]:
    """Evaluate parameters on a single client."""
    evaluate_res = client.evaluate(ins, timeout=timeout, group_id=group_id)
    return client, evaluate_res


def _collect(finished: set[concurrent.futures.Future[Any]]) -> tuple[list[Any], list[Any]]:
    results: list[Any] = []
    failures: list[Any] = []
    for future in finished:
        failure = future.exception()
        if failure is not None:
            failures.append(failure)
            continue
        result = future.result()
        (results if result[1].status.code == Code.OK else failures).append(result)
    return results, failures


def fit_clients(client_instructions: list[tuple[ClientProxy, FitIns]], max_workers: int | None,
                timeout: float | None, group_id: int) -> FitResultsAndFailures:
    """Refine parameters concurrently on all selected clients (Flower's: a thread pool;
    an exception or a non-OK status is a failure)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as executor:
        submitted = {executor.submit(fit_client, p, ins, timeout, group_id)
                     for p, ins in client_instructions}
        finished, _ = concurrent.futures.wait(fs=submitted, timeout=None)
    return _collect(finished)


def evaluate_clients(client_instructions: list[tuple[ClientProxy, EvaluateIns]], max_workers: int | None,
                     timeout: float | None, group_id: int) -> EvaluateResultsAndFailures:
    """Evaluate parameters concurrently on all selected clients."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as executor:
        submitted = {executor.submit(evaluate_client, p, ins, timeout, group_id)
                     for p, ins in client_instructions}
        finished, _ = concurrent.futures.wait(fs=submitted, timeout=None)
    return _collect(finished)


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
    server: Server | None = None,
    config: ServerConfig | None = None,
    strategy: Strategy | None = None,
    client_manager: ClientManager | None = None,
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
    certificates: Any = None,
    **_flower_kwargs: Any,
) -> History:
    """Run the server over gRPC with mutual TLS (Flower's ``start_server``, plus ours).

    Args:
        server_address: where the router listens (``host:port``); overrides
            ``[federation].listen``. With ``host_router=False`` the router named in
            the federation file must already run (``python -m party.router``).
        config: rounds and per-round timeout.
        strategy: aggregation rule (default FedAvg).
        server, client_manager, certificates: Flower's arguments; refused (tessera
            builds the server over the federation's party, and the federation file
            names the certificates).
        federation: the federation TOML (CA, router and party certificates); defaults
            to ``$TESSERA_FEDERATION``.
        name: this server's party name (default: the ``role = "server"`` party).
        secure_agg, checkpoint_dir, output_dir, seed, progress, wait_for_clients_s,
        min_clients_at_start: as for :class:`Server`.

    Returns:
        The training :class:`History` (``history.parameters`` is the final model).
    """
    refuse_flower_kwargs("start_server", _flower_kwargs)
    for nm, v in (("server", server), ("client_manager", client_manager), ("certificates", certificates)):
        if v is not None:
            raise ConfigError(
                f"start_server({nm}=...) is not supported: tessera builds its Server over the "
                "federation's party with mutual TLS; name the certificates in the federation file "
                "and pass strategy=/config= instead")
    config = config or ServerConfig()
    with server_party(server_address=server_address, federation=federation, name=name,
                      host_router=host_router) as (party, clients):
        srv = Server(party, strategy, clients=clients, secure_agg=secure_agg,
                     checkpoint_dir=checkpoint_dir, output_dir=output_dir, seed=seed,
                     progress=progress, wait_for_clients_s=wait_for_clients_s,
                     min_clients_at_start=min_clients_at_start)
        history = srv.fit(config.num_rounds, config.round_timeout)
        srv.shutdown()
        time.sleep(0.5)  # let the router deliver the Shutdowns before it stops
        return history


__all__ = [
    "ClientFailure",
    "NotEnoughClients",
    "PartyClientManager",
    "PartyClientProxy",
    "Server",
    "ServerConfig",
    "evaluate_clients",
    "fit_clients",
    "start_server",
]
