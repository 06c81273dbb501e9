"""The server's client parties: who is connected, and one instruction out with its reply back.

:class:`PartyClients` (a base of :class:`hfl.server.Server`) keeps, for each client
party, the incarnation it connected under (its ``Hello``, then the confirmed run
handshake of :func:`party.handshake.open_run`) and a sequence number for its tags;
:meth:`PartyClients.ask` sends one instruction per client and collects the replies
under one shared deadline, telling stragglers, disconnects and malformed replies apart.
:class:`PartyClientProxy` and :class:`PartyClientManager` are a strategy's view of
them (Flower's ``ClientProxy`` and ``ClientManager``); :func:`check_fit` and
:func:`check_evaluate` are the checks every reply passes before it reaches a strategy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hfl import common
from hfl import messages as wire
from hfl.common import describe_mismatch
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import OK
from hfl.server.client_manager import ClientManager, eligible
from hfl.server.client_proxy import ClientProxy
from hfl.server.criterion import Criterion
from party import (
    ConfigError,
    Party,
    PartyTimeout,
    PartyUnavailable,
    RemoteProtocolError,
    Tag,
    TesseraError,
    encode,
)
from party.handshake import open_run

log = logging.getLogger("hfl.server")


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



def wrong_reply(r: Any, kind: type | None) -> str | None:
    """Why ``r`` is not a reply of type ``kind`` (a client's Failure, or another message)."""
    if isinstance(r, wire.Failure):
        return f"client error: {r.message}"
    if kind is not None and not isinstance(r, kind):
        return f"sent {type(r).__name__} instead of {kind.__name__}"
    return None


def _wrong_result(r: Any, kind: type[wire.FitRes] | type[wire.EvaluateRes]) -> str | None:
    why = wrong_reply(r, kind)
    if why is None and r.num_examples <= 0:
        why = f"num_examples is {r.num_examples}"
    return why


def check_fit(r: Any, params: common.NDArrays, secure: bool) -> str | None:
    """Why a fit reply is rejected: not a FitRes, no examples, arrays unlike ``params``
    (NaN/inf included), or, under secure aggregation, any parameters in the clear."""
    why = _wrong_result(r, wire.FitRes)
    if why is not None:
        return why
    if secure:
        return None if not r.parameters else "sent parameters in the clear during secure aggregation"
    return describe_mismatch(params, r.parameters)


def check_evaluate(r: Any) -> str | None:
    """Why an evaluate reply is rejected: not an EvaluateRes, no examples, a loss not finite."""
    why = _wrong_result(r, wire.EvaluateRes)
    if why is None and not np.isfinite(r.loss):
        why = f"loss is {r.loss}"
    return why


class PartyClients:
    """The client side of a server over a :class:`Party` (a base of :class:`hfl.server.Server`)."""

    party: Party | None
    clients: list[str]
    wait_for_clients_s: float
    handshake_timeout_s: float
    _client_manager: ClientManager
    _incarnation: dict[str, str]
    _seq: dict[str, int]

    def _timeout(self, round_timeout: float | None) -> float:
        return 3600.0 if round_timeout is None else float(round_timeout)

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


class PartyClientProxy(ClientProxy):
    """A strategy's handle for one client party: its name (``cid``) and the server to ask."""

    def __init__(self, cid: str, server: PartyClients, node_id: int) -> None:
        super().__init__(cid)
        self.node_id = node_id
        self._server = server

    def _one(self, msg: Any, timeout: float | None, kind: type | None = None) -> Any:
        """The client's reply to ``msg`` (of type ``kind`` if given), or ClientFailure."""
        replies, failures = self._server.ask([(self.cid, msg)], self._server._timeout(timeout))
        if self.cid not in replies:
            raise ClientFailure(self.cid, failures.get(self.cid, "no reply"))
        r = replies[self.cid]
        why = wrong_reply(r, kind)
        if why is not None:
            raise ClientFailure(self.cid, why)
        return r

    def get_properties(self, ins: common.GetPropertiesIns, timeout: float | None,
                       group_id: int | None) -> common.GetPropertiesRes:
        r = self._one(wire.GetPropertiesIns(dict(ins.config)), timeout, wire.GetPropertiesRes)
        return common.GetPropertiesRes(OK, dict(r.properties))

    def get_parameters(self, ins: common.GetParametersIns, timeout: float | None,
                       group_id: int | None) -> common.GetParametersRes:
        r = self._one(wire.GetParametersIns(dict(ins.config)), timeout, wire.GetParametersRes)
        return common.GetParametersRes(OK, ndarrays_to_parameters(r.parameters))

    def fit(self, ins: common.FitIns, timeout: float | None, group_id: int | None) -> common.FitRes:
        arrays = parameters_to_ndarrays(ins.parameters)
        r = self._one(wire.FitIns(arrays, dict(ins.config)), timeout)
        why = check_fit(r, arrays, secure=False)
        if why is not None:
            raise ClientFailure(self.cid, f"rejected: {why}")
        return common.FitRes(OK, ndarrays_to_parameters(r.parameters), r.num_examples,
                             dict(r.metrics))

    def evaluate(self, ins: common.EvaluateIns, timeout: float | None,
                 group_id: int | None) -> common.EvaluateRes:
        r = self._one(wire.EvaluateIns(parameters_to_ndarrays(ins.parameters), dict(ins.config)), timeout)
        why = check_evaluate(r)
        if why is not None:
            raise ClientFailure(self.cid, why)
        return common.EvaluateRes(OK, r.loss, r.num_examples, dict(r.metrics))

    def reconnect(self, ins: common.ReconnectIns, timeout: float | None,
                  group_id: int | None) -> common.DisconnectRes:
        """Tell the client to leave (tessera clients do not come back on a timer)."""
        self._server.ask([(self.cid, wire.Shutdown("reconnect requested"))], 0.0, expect_reply=False)
        return common.DisconnectRes(reason="RECONNECT")

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

    def __init__(self, server: PartyClients) -> None:
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
        pool = eligible(self.clients, sorted(self.clients), criterion, num_clients, logging.WARNING)
        if pool is None:
            return []
        idx = self.rng.choice(len(pool), size=num_clients, replace=False)
        return [self.clients[c] for c in sorted(pool[i] for i in idx)]
