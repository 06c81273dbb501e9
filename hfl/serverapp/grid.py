"""Flower's ``Grid``: how a ServerApp strategy reaches the nodes, plus an in-process grid.

``Grid.send_and_receive(messages, timeout=...)`` sends instructions and returns the
replies, each a :class:`~hfl.common.Message` whose content is a ``RecordDict`` or an
``Error``. :class:`InMemoryGrid` runs ClientApps (``hfl.clientapp.ClientApp``, or
any ``fn(message, context) -> Message``) in this process, one per node id: what
``strategy.start(grid=InMemoryGrid(...))`` needs to train without a network.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hfl.common.message import Context, Error, Message, MessageType
from hfl.common.record import RecordDict


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


__all__ = ["Grid", "InMemoryGrid", "MessageType"]
