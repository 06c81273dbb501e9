"""Flower's ``ClientApp`` (``flwr.clientapp``): Message-API handlers on a node.

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        ...
        return Message(RecordDict({"arrays": ArrayRecord(new),
                                   "metrics": MetricRecord({"num-examples": n})}), reply_to=msg)

``app(message, context)`` runs the handler registered for the message's type
(``"train"``, ``"evaluate"``, ``"query"``, or ``"train.<name>"`` with
``@app.train("<name>")``). ``ClientApp(client_fn=client_fn)`` is Flower's legacy
form: ``client_fn(context)`` returns a ``Client`` (``NumPyClient(...).to_client()``)
and the app runs the legacy instructions a legacy ``ServerApp`` sends
(:func:`handle_legacy_message`). ``python -m hfl run APP_DIR`` runs
either kind (:mod:`hfl.run`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hfl.common.message import Context, Error, Message, MessageType

Handler = Callable[[Message, Context], Message]


class ClientApp:
    """Register ``train``/``evaluate``/``query`` handlers; call the app with a message."""

    def __init__(self, client_fn: Callable[..., Any] | None = None, mods: list[Any] | None = None) -> None:
        # mods: tessera runs its DP mods (fixedclipping_mod, adaptiveclipping_mod, LocalDpMod;
        # hfl.client.mod) on a legacy client_fn's fit results; any other mod is refused here
        self.mods = list(mods or [])
        if self.mods:
            from hfl.client.mod import check_mod

            if client_fn is None:
                raise NotImplementedError(
                    "ClientApp mods run only with client_fn= in tessera (not with Message handlers)")
            for m in self.mods:
                check_mod(m)
        self.client_fn = client_fn
        self._handlers: dict[str, Handler] = {}

    def client(self, context: Context) -> Any:
        """The legacy app's ``Client`` for this node (``client_fn(context)``, ``to_client()``-ed)."""
        if self.client_fn is None:
            raise ValueError("this ClientApp has Message handlers, not a client_fn")
        c = self.client_fn(context)
        if self.mods:
            from hfl.client.mod import with_mods
            from hfl.client.numpy_client import NumPyClient

            if not isinstance(c, NumPyClient):
                raise NotImplementedError(
                    "ClientApp mods need client_fn to return a NumPyClient (not .to_client())")
            c = with_mods(c, *self.mods)
        return c.to_client() if hasattr(c, "to_client") else c

    def _register(self, kind: str, name: str | None) -> Callable[[Handler], Handler]:
        key = kind if not name else f"{kind}.{name}"
        if self.client_fn is not None:
            raise ValueError("Use either @app.train()/@app.evaluate()/@app.query() or client_fn, not both")

        def deco(fn: Handler) -> Handler:
            if key in self._handlers:
                raise ValueError(f"a handler for {key!r} is already registered")
            self._handlers[key] = fn
            return fn

        return deco

    def train(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register the handler for ``train`` messages."""
        return self._register(MessageType.TRAIN, name)

    def evaluate(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register the handler for ``evaluate`` messages."""
        return self._register(MessageType.EVALUATE, name)

    def query(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register the handler for ``query`` messages."""
        return self._register(MessageType.QUERY, name)

    def __call__(self, message: Message, context: Context) -> Message:
        if self.client_fn is not None:
            return handle_legacy_message(self.client(context), message)
        key = message.metadata.message_type
        fn = self._handlers.get(key)
        if fn is None:
            raise ValueError(f"this ClientApp has no handler for message type {key!r} "
                             f"(registered: {', '.join(sorted(self._handlers)) or 'none'})")
        reply = fn(message, context)
        if not isinstance(reply, Message):
            raise TypeError(f"the {key!r} handler returned {type(reply).__name__}, not a Message")
        return reply


def handle_legacy_message(client: Any, msg: Message) -> Message:
    """Run a legacy instruction Message on a ``Client`` (``ClientApp(client_fn=...)``'s side)."""
    from hfl.client import client as client_mod
    from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
    from hfl.common.record import ArrayRecord, MetricRecord, RecordDict
    from hfl.common.typing import Code, EvaluateIns, FitIns, GetParametersIns

    kind = msg.metadata.message_type
    c = msg.content
    try:
        if kind == MessageType.TRAIN:
            res = client_mod.maybe_call_fit(client, FitIns(
                ndarrays_to_parameters(c["fitins.parameters"].to_numpy_ndarrays()), dict(c["fitins.config"])))
            if res.status.code != Code.OK:
                return Message(Error(code=res.status.code.value, reason=res.status.message), reply_to=msg)
            metrics = MetricRecord({k: v for k, v in res.metrics.items() if isinstance(v, (int, float))
                                    and not isinstance(v, bool)})
            metrics["num-examples"] = int(res.num_examples)
            return Message(RecordDict({"fitres.parameters": ArrayRecord(parameters_to_ndarrays(res.parameters)),
                                       "fitres.metrics": metrics}), reply_to=msg)
        if kind == MessageType.EVALUATE:
            ev = client_mod.maybe_call_evaluate(client, EvaluateIns(
                ndarrays_to_parameters(c["evaluateins.parameters"].to_numpy_ndarrays()),
                dict(c["evaluateins.config"])))
            if ev.status.code != Code.OK:
                return Message(Error(code=ev.status.code.value, reason=ev.status.message), reply_to=msg)
            metrics = MetricRecord({k: v for k, v in ev.metrics.items() if isinstance(v, (int, float))
                                    and not isinstance(v, bool)})
            metrics["num-examples"] = int(ev.num_examples)
            metrics["loss"] = float(ev.loss)
            return Message(RecordDict({"evaluateres.metrics": metrics}), reply_to=msg)
        if kind == MessageType.QUERY + ".get_parameters":
            gp = client_mod.maybe_call_get_parameters(client, GetParametersIns(dict(c["getparametersins.config"])))
            if gp.status.code != Code.OK:
                return Message(Error(code=gp.status.code.value, reason=gp.status.message), reply_to=msg)
            return Message(RecordDict({"getparametersres.parameters": ArrayRecord(
                parameters_to_ndarrays(gp.parameters))}), reply_to=msg)
    except Exception as e:  # the user's code failed: an error reply, the strategy sees a failure
        return Message(Error(code=500, reason=f"{type(e).__name__}: {e}"), reply_to=msg)
    return Message(Error(code=400, reason=f"unknown legacy message type {kind!r}"), reply_to=msg)


class AppNode:
    """A Message-API ClientApp with its node's Context: what the client loop serves."""

    def __init__(self, app: ClientApp, context: Context) -> None:
        self.app = app
        self.context = context

    def __call__(self, message: Message) -> Message:
        return self.app(message, self.context)


__all__ = ["AppNode", "ClientApp", "handle_legacy_message"]
