"""Client side: Flower's ``NumPyClient`` API, the instruction loop, and ``start_client``.

How a Flower client ports, and what the server learns from a client: see :mod:`hfl.client`
(the package's docstring), which re-exports this module's public names.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Union

import numpy as np

from hfl import common
from hfl import messages as wire
from hfl.client import client as client_mod
from hfl.client import numpy_client
from hfl.client.client import Client
from hfl.client.numpy_client import NumPyClient
from hfl.clientapp import AppNode
from hfl.common import NDArrays, describe_mismatch, refuse_flower_kwargs
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import Code
from hfl.deploy import client_party_loop
from hfl.messages import (
    HELLO_TAG,
    PROTOCOL,
    AppMessage,
    Failure,
    Hello,
    Shutdown,
    from_app_message,
    to_app_message,
)
from party import ClosedTransport, ConfigError, Party, PartyTimeout, PartyUnavailable, Tag
from party.handshake import open_run

log = logging.getLogger("hfl.client")

DEFAULT_IDLE_TIMEOUT_S = 24 * 3600.0


ClientLike = Union[NumPyClient, Client, AppNode, Callable[[], Any]]  # noqa: UP007


def _materialise(client: ClientLike) -> NumPyClient | Client:
    if isinstance(client, (NumPyClient, Client)):
        return client
    if isinstance(client, AppNode):
        raise TypeError("a Message-API node has no NumPyClient or Client")
    made = client()
    if hasattr(made, "to_client") and not isinstance(made, (NumPyClient, Client)):
        made = made.to_client()
    if not isinstance(made, (NumPyClient, Client)):
        raise TypeError(f"client factory returned {type(made).__name__}, not a NumPyClient or Client")
    return made


def _arrays(xs: Any, what: str) -> NDArrays:
    if not isinstance(xs, (list, tuple)):
        raise TypeError(f"{what} must return a list of numpy arrays, got {type(xs).__name__}")
    return [np.asarray(x, order="C") for x in xs]


def _not_implemented(what: str, c: Any) -> Failure:
    return Failure(f"{type(c).__name__} does not implement `{what}`")


def _fit_or_evaluate(method: Callable[..., Any], msg: Any, expected: str) -> tuple[Any, Any, Any]:
    """``method(parameters, config)`` (``fit`` or ``evaluate``), which must return a 3-tuple."""
    out: Any = method(list(msg.parameters), dict(msg.config))
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(expected)
    return out


def _handle_numpy(c: NumPyClient, msg: Any) -> Any:
    if isinstance(msg, wire.GetPropertiesIns):
        return wire.GetPropertiesRes(dict(c.get_properties(dict(msg.config)) or {}))
    if isinstance(msg, wire.GetParametersIns):
        if not numpy_client.has_get_parameters(c):
            return _not_implemented("get_parameters", c)
        return wire.GetParametersRes(_arrays(c.get_parameters(dict(msg.config)), "get_parameters"))
    if isinstance(msg, wire.FitIns):
        if not numpy_client.has_fit(c):
            return _not_implemented("fit", c)
        params, n, metrics = _fit_or_evaluate(c.fit, msg,
                                              "fit must return (parameters, num_examples, metrics)")
        return wire.FitRes(_arrays(params, "fit"), int(n), dict(metrics or {}))
    if isinstance(msg, wire.EvaluateIns):
        if not numpy_client.has_evaluate(c):
            return _not_implemented("evaluate", c)
        loss, n, metrics = _fit_or_evaluate(c.evaluate, msg,
                                            "evaluate must return (loss, num_examples, metrics)")
        return wire.EvaluateRes(float(loss), int(n), dict(metrics or {}))
    raise TypeError(f"unexpected instruction {type(msg).__name__}")


def _status_failure(res: Any) -> Failure | None:
    if res.status.code != Code.OK:
        return Failure(f"status {res.status.code.name}: {res.status.message}")
    return None


def _handle_client(c: Client, msg: Any) -> Any:
    if isinstance(msg, wire.GetPropertiesIns):
        r0 = client_mod.maybe_call_get_properties(c, common.GetPropertiesIns(dict(msg.config)))
        return _status_failure(r0) or wire.GetPropertiesRes(dict(r0.properties))
    if isinstance(msg, wire.GetParametersIns):
        r1 = client_mod.maybe_call_get_parameters(c, common.GetParametersIns(dict(msg.config)))
        return _status_failure(r1) or wire.GetParametersRes(parameters_to_ndarrays(r1.parameters))
    if isinstance(msg, wire.FitIns):
        r2 = client_mod.maybe_call_fit(c, common.FitIns(ndarrays_to_parameters(msg.parameters),
                                                         dict(msg.config)))
        return _status_failure(r2) or wire.FitRes(parameters_to_ndarrays(r2.parameters),
                                                   int(r2.num_examples), dict(r2.metrics or {}))
    if isinstance(msg, wire.EvaluateIns):
        r3 = client_mod.maybe_call_evaluate(
            c, common.EvaluateIns(ndarrays_to_parameters(msg.parameters), dict(msg.config)))
        return _status_failure(r3) or wire.EvaluateRes(float(r3.loss), int(r3.num_examples),
                                                        dict(r3.metrics or {}))
    raise TypeError(f"unexpected instruction {type(msg).__name__}")


def handle(client: ClientLike, msg: Any) -> Any:
    """Run one instruction on ``client`` and build the reply (pure: no I/O).

    ``client`` is a :class:`NumPyClient`, a :class:`Client` (``to_client()``'s
    wrapper is unwrapped, so arrays are not serialised twice), or a factory of
    either. Exceptions raised by the user's code, a method the client does not
    implement and a non-OK status become :class:`Failure` replies, so the server
    drops this client for the round and learns why.
    """
    try:
        if isinstance(msg, AppMessage):
            if not isinstance(client, AppNode):
                raise TypeError("this node serves a legacy client, not a Message-API ClientApp")
            reply = client(from_app_message(msg))
            return to_app_message(reply)
        if isinstance(client, AppNode):
            raise TypeError(f"this node serves a Message-API ClientApp, not {type(msg).__name__}")
        c = _materialise(client)
        inner = getattr(c, "numpy_client", None)
        if isinstance(c, Client) and isinstance(inner, NumPyClient):
            return _handle_numpy(inner, msg)
        if isinstance(c, NumPyClient):
            return _handle_numpy(c, msg)
        return _handle_client(c, msg)
    except Exception as e:  # the user's training code: report, do not die
        log.warning("client failed on %s: %s: %s", type(msg).__name__, type(e).__name__, e)
        return Failure(f"{type(e).__name__}: {e}")


def flatten_update(new: NDArrays, old: NDArrays) -> np.ndarray:
    """Concatenate ``new - old`` into one float64 vector (what secure aggregation sums)."""
    if not new:
        return np.zeros(0)
    return np.concatenate([(np.asarray(a, np.float64) - np.asarray(b, np.float64)).ravel()
                           for a, b in zip(new, old, strict=True)])


def run_client(
    party: Party,
    client: ClientLike,
    *,
    server: str = "server",
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    executor: Executor | None = None,
) -> str:
    """Serve the server's instructions until it says Shutdown; returns why the loop ended.

    ``client`` is a NumPyClient or a factory called per instruction (how the
    simulation keeps hundreds of clients cheap). With ``executor``, the user's
    code runs on that pool. Returns ``"shutdown"`` or ``"server gone: ..."``;
    :class:`ClosedTransport` and a dead router also end the loop with the latter.
    """
    incarnation = uuid.uuid4().hex[:16]
    seq = 0
    try:
        party.send(server, HELLO_TAG, Hello(incarnation))
        # the session handshake (party.handshake): both confirm this client incarnation and
        # the server's before any instruction; the session is named by our incarnation
        try:
            open_run(party, [server], protocol=PROTOCOL, session=incarnation,
                     timeout_s=idle_timeout_s, wait_for_restart=False)
        except PartyTimeout:
            return f"server gone: no session handshake within {idle_timeout_s:g} s"
        while True:
            tag = Tag(PROTOCOL, incarnation, seq, "ins")
            try:
                msg = party.recv(server, tag, timeout_s=idle_timeout_s)
            except PartyTimeout:
                return f"server gone: no instruction within {idle_timeout_s:g} s"
            if isinstance(msg, Shutdown):
                return "shutdown"
            if isinstance(msg, wire.FitIns) and msg.secagg_session:
                _secure_fit(party, client, msg, server=server, tag=tag, executor=executor)
            else:
                reply = executor.submit(handle, client, msg).result() if executor else handle(
                    client, msg)
                party.send(server, tag.at("res"), reply)
            seq += 1
    except (PartyUnavailable, ClosedTransport) as e:
        return f"server gone: {e}"


def _secure_fit(
    party: Party, client: ClientLike, ins: wire.FitIns, *, server: str, tag: Tag,
    executor: Executor | None,
) -> None:
    """Train, check the update locally, then send it only through secure aggregation."""
    from hfl.secure import client_round  # imports secure_agg lazily

    res = executor.submit(handle, client, ins).result() if executor else handle(client, ins)
    if isinstance(res, wire.FitRes):
        # The server cannot inspect a masked update, so the client checks its own.
        why = describe_mismatch(list(ins.parameters), list(res.parameters))
        if why is None and res.num_examples <= 0:
            why = f"num_examples is {res.num_examples}"
        if why is not None:
            res = Failure(f"fit result rejected before secure aggregation: {why}")
    if not isinstance(res, wire.FitRes):
        party.send(server, tag.at("res"), res)
        return
    party.send(server, tag.at("res"), wire.FitRes([], res.num_examples, res.metrics))
    delta = flatten_update(list(res.parameters), list(ins.parameters))
    try:
        client_round(party, server, delta, res.num_examples, session=ins.secagg_session,
                     params=dict(ins.secagg_params))
    except (PartyUnavailable, ClosedTransport):
        raise
    except Exception as e:  # e.g. a weight over max_weight: this round only
        log.warning("%s: secure aggregation %s failed: %s: %s", party.name, ins.secagg_session,
                    type(e).__name__, e)


def start_client(
    *,
    server_address: str | None = None,
    client: ClientLike | None = None,
    client_fn: Callable[..., Any] | None = None,
    federation: str | Path | None = None,
    name: str | None = None,
    server_name: str | None = None,
    max_retries: int | None = None,
    max_wait_time: float | None = 60.0,
    insecure: bool = False,
    join_token: str | None = None,
    **_flower_kwargs: Any,
) -> str:
    """Connect to the federation's router over gRPC with mutual TLS and serve the server.

    Args:
        server_address: the router's ``host:port``; overrides ``[federation].router``.
        client: a :class:`NumPyClient` or :class:`Client` (``FlowerClient().to_client()``).
        client_fn: or Flower's ``client_fn(context) -> Client``, called per instruction.
        federation: the federation TOML (CA, this party's certificate and key).
            Defaults to ``$TESSERA_FEDERATION``.
        name: this client's party name; defaults to ``$TESSERA_PARTY``, or the only
            ``role = "client"`` party whose key file exists.
        server_name: the aggregator's party name (default: the ``role = "server"`` party).
        max_retries, max_wait_time: give up reconnecting after this many attempts /
            seconds without a connection (Flower's names).
        insecure: refused; tessera always uses mutual TLS.
        join_token: a one-time token from ``python -m party.certs token`` (default
            ``$TESSERA_JOIN_TOKEN``): enroll at the server, then connect (hfl.deploy).
            With neither a token nor a federation file: the local development federation.

    Returns:
        ``"shutdown"`` when the server finished training.

    Raises:
        ConfigError: no federation file, or this party is not in it.
        PartyUnavailable: no connection within ``max_wait_time``.
    """
    refuse_flower_kwargs("start_client", _flower_kwargs)
    if (client is None) == (client_fn is None):
        raise ConfigError("start_client needs exactly one of client= or client_fn=")
    if client is None:
        assert client_fn is not None
        from hfl.common.message import Context

        fn = client_fn
        ctx = Context(node_config={"partition-id": 0, "num-partitions": 1})
        client = lambda: fn(ctx)  # noqa: E731
    return client_party_loop(
        server_address=server_address, federation=federation, name=name,
        server_name=server_name, max_retries=max_retries, max_wait_time=max_wait_time,
        insecure=insecure, serve=lambda party, server: run_client(party, client, server=server),
        join_token=join_token,
    )


def start_numpy_client(*, server_address: str | None = None, client: NumPyClient,
                       **kw: Any) -> str:
    """Deprecated Flower alias of :func:`start_client`."""
    return start_client(server_address=server_address, client=client, **kw)


__all__ = [
    "HELLO_TAG",
    "Client",
    "NumPyClient",
    "flatten_update",
    "handle",
    "refuse_flower_kwargs",
    "run_client",
    "start_client",
    "start_numpy_client",
]
