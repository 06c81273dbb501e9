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
``@app.train("<name>")``). tessera runs ClientApps in-process with
:class:`hfl.serverapp.InMemoryGrid`; over a network, tessera's clients are
``NumPyClient``/``Client`` objects served by :func:`hfl.client.start_client`
(running a ClientApp over the gRPC federation is not available yet: ``ClientApp(client_fn=...)``
is refused with that message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hfl.common.message import Context, Message, MessageType

Handler = Callable[[Message, Context], Message]


class ClientApp:
    """Register ``train``/``evaluate``/``query`` handlers; call the app with a message."""

    def __init__(self, client_fn: Callable[..., Any] | None = None, mods: list[Any] | None = None) -> None:
        if client_fn is not None:
            raise NotImplementedError(
                "ClientApp(client_fn=...) (Flower's legacy bridge) is not available in tessera: "
                "serve a NumPyClient with hfl.client.start_client(...) or hfl.simulate(client_fn, ...), "
                "or register Message handlers with @app.train() / @app.evaluate()")
        if mods:
            raise NotImplementedError("ClientApp mods are not available in tessera")
        self._handlers: dict[str, Handler] = {}

    def _register(self, kind: str, name: str | None) -> Callable[[Handler], Handler]:
        key = kind if not name else f"{kind}.{name}"

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
        key = message.metadata.message_type
        fn = self._handlers.get(key)
        if fn is None:
            raise ValueError(f"this ClientApp has no handler for message type {key!r} "
                             f"(registered: {', '.join(sorted(self._handlers)) or 'none'})")
        reply = fn(message, context)
        if not isinstance(reply, Message):
            raise TypeError(f"the {key!r} handler returned {type(reply).__name__}, not a Message")
        return reply


__all__ = ["ClientApp"]
