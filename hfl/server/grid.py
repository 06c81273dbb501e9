"""Flower's ``Grid``: how a ServerApp strategy reaches the nodes, plus an in-process grid.

``Grid.send_and_receive(messages, timeout=...)`` sends instructions and returns the
replies, each a :class:`~hfl.common.Message` whose content is a ``RecordDict`` or an
``Error``. :class:`InMemoryGrid` runs ClientApps (``hfl.clientapp.ClientApp``, or
any ``fn(message, context) -> Message``) in this process, one per node id: what
``strategy.start(grid=InMemoryGrid(...))`` needs to train without a network.
:class:`PartyGrid` reaches the client parties of a federation through a tessera
:class:`~hfl.server.server.Server` (gRPC with mutual TLS, or in memory): node ``i + 1``
is the server's ``i``-th client party, and each message travels as an
:class:`hfl.messages.AppMessage` (arrays through the safe codec, never pickle).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hfl.common.message import Context, Error, Message, MessageType
from hfl.common.record import RecordDict

if TYPE_CHECKING:
    from hfl.server.server import Server


class Grid(ABC):
    """Abstract base class Grid to send/receive messages."""

    @abstractmethod
    def get_node_ids(self) -> Iterable[int]:
        """Get node IDs."""

    @abstractmethod
    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Push messages to the nodes and return their replies."""

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """Create a new message with the specified parameters."""
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)


ClientAppLike = Callable[[Message, Context], Message]


class InMemoryGrid(Grid):
    """Nodes ``1..n`` (or the keys of a mapping), each running a ClientApp in this process.

    Each node keeps its own :class:`Context` (``node_config`` has Flower's
    ``partition-id`` / ``num-partitions``; ``state`` persists across rounds). An
    exception in a ClientApp becomes a reply carrying an :class:`Error`, which
    strategies count as a failed node, as Flower's do.
    """

    def __init__(self, apps: Iterable[ClientAppLike] | Mapping[int, ClientAppLike], *,
                 run_config: dict[str, Any] | None = None) -> None:
        items = list(apps.items()) if isinstance(apps, Mapping) else list(enumerate(apps, start=1))
        if not items:
            raise ValueError("InMemoryGrid needs at least one ClientApp")
        self._apps = dict(items)
        n = len(items)
        self._contexts = {
            nid: Context(run_id=1, node_id=nid,
                         node_config={"partition-id": i, "num-partitions": n},
                         run_config=dict(run_config or {}))
            for i, (nid, _) in enumerate(items)}

    def get_node_ids(self) -> Iterable[int]:
        return list(self._apps)

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for msg in messages:
            nid = msg.metadata.dst_node_id
            if nid not in self._apps:
                replies.append(Message(Error(code=404, reason=f"no node {nid}"), reply_to=msg))
                continue
            # each node gets its own copy, as over a network: a ClientApp mutating the
            # content cannot change what other nodes (or the strategy) see
            ins = Message(copy.deepcopy(msg.content), metadata=copy.copy(msg.metadata))
            try:
                reply = self._apps[nid](ins, self._contexts[nid])
            except Exception as e:  # the node's code failed: an error reply
                reply = Message(Error(code=500, reason=f"{type(e).__name__}: {e}"), reply_to=msg)
            reply.metadata.src_node_id = nid
            replies.append(reply)
        return replies


class PartyGrid(Grid):
    """The client parties connected to a tessera server, as grid nodes ``1..n``.

    What the server learns is what the ServerApp asks for: each node's reply content.
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self._names = {i + 1: name for i, name in enumerate(server.clients)}
        self._ids = {name: i for i, name in self._names.items()}

    def get_node_ids(self) -> Iterable[int]:
        return [self._ids[c] for c in self._server.poll_clients()]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        from hfl.messages import AppMessage, Failure, from_app_message, to_app_message

        msgs = list(messages)
        out: list[Message] = []
        plan: list[tuple[str, Any]] = []
        for msg in msgs:
            name = self._names.get(msg.metadata.dst_node_id)
            if name is not None:
                plan.append((name, to_app_message(msg)))
        self._server.poll_clients()
        replies, failures = self._server.ask(plan, 3600.0 if timeout is None else float(timeout))
        for msg in msgs:
            nid = msg.metadata.dst_node_id
            name = self._names.get(nid)
            r = replies.get(name) if name is not None else None
            if isinstance(r, AppMessage):
                reply = from_app_message(r, reply_to=msg)
            else:
                why = (f"no node {nid}" if name is None else failures.get(name)
                       or (r.message if isinstance(r, Failure) else f"sent {type(r).__name__}"))
                reply = Message(Error(code=500, reason=str(why)), reply_to=msg)
            reply.metadata.src_node_id = nid
            out.append(reply)
        return out


__all__ = ["Grid", "InMemoryGrid", "MessageType", "PartyGrid"]
