"""Flower's ``Message``, ``Metadata``, ``Error``, ``MessageType`` and ``Context``.

A :class:`Message` carries a :class:`~hfl.common.record.RecordDict` (or an
:class:`Error`) between a ServerApp and a ClientApp, with Flower's constructors:
``Message(content, dst_node_id, message_type)`` for an instruction and
``Message(content, reply_to=msg)`` / ``Message(error, reply_to=msg)`` for a reply.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hfl.common.record import RecordDict

DEFAULT_TTL = 43200.0  # Flower's default: 12 h


class MessageType:
    """Message types (Flower's names)."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"
    SYSTEM = "system"


@dataclass
class Error:
    """What went wrong on the other side: a code and a reason."""

    code: int
    reason: str | None = None


@dataclass
class Metadata:
    """A message's envelope (Flower's field names)."""

    run_id: int = 0
    message_id: str = ""
    src_node_id: int = 0
    dst_node_id: int = 0
    reply_to_message_id: str = ""
    group_id: str = ""
    ttl: float = DEFAULT_TTL
    message_type: str = ""
    created_at: float = field(default_factory=time.time)


class Message:
    """Content (a RecordDict) or an error, plus metadata."""

    metadata: Metadata

    def __init__(self, content: RecordDict | Error | None = None, dst_node_id: int | None = None,
                 message_type: str | None = None, *, error: Error | None = None,
                 ttl: float | None = None, group_id: str | None = None,
                 reply_to: Message | None = None, metadata: Metadata | None = None) -> None:
        if isinstance(content, Error):
            content, error = None, content
        if content is not None and error is not None:
            raise ValueError("a Message carries content or an error, not both")
        if content is not None and not isinstance(content, RecordDict):
            raise TypeError(f"Message content must be a RecordDict, got {type(content).__name__}")
        if metadata is None:
            if reply_to is not None:
                if dst_node_id is not None or message_type is not None:
                    raise ValueError("a reply takes its destination and type from reply_to")
                src = reply_to.metadata
                metadata = Metadata(run_id=src.run_id, src_node_id=src.dst_node_id,
                                    dst_node_id=src.src_node_id, reply_to_message_id=src.message_id,
                                    group_id=src.group_id, message_type=src.message_type,
                                    ttl=src.ttl if ttl is None else ttl)
            else:
                if message_type is None:
                    raise ValueError("a Message needs a message_type (e.g. MessageType.TRAIN)")
                metadata = Metadata(dst_node_id=int(dst_node_id or 0), message_type=message_type,
                                    group_id=group_id or "", ttl=DEFAULT_TTL if ttl is None else ttl)
            metadata.message_id = uuid.uuid4().hex
        self.metadata = metadata
        self._content = content
        self._error = error

    @property
    def content(self) -> RecordDict:
        if self._content is None:
            raise ValueError("Message has no content (it carries an error); check has_content()")
        return self._content

    @content.setter
    def content(self, value: RecordDict) -> None:
        self._content, self._error = value, None

    @property
    def error(self) -> Error:
        if self._error is None:
            raise ValueError("Message has no error; check has_error()")
        return self._error

    @error.setter
    def error(self, value: Error) -> None:
        self._content, self._error = None, value

    def has_content(self) -> bool:
        return self._content is not None

    def has_error(self) -> bool:
        return self._error is not None

    def __repr__(self) -> str:
        body = f"content={self._content!r}" if self._content is not None else f"error={self._error!r}"
        return f"Message(metadata={self.metadata!r}, {body})"


@dataclass
class Context:
    """What a ClientApp/ServerApp function gets: ids, node and run config, and its state."""

    run_id: int = 0
    node_id: int = 0
    node_config: dict[str, Any] = field(default_factory=dict)
    state: RecordDict = field(default_factory=RecordDict)
    run_config: dict[str, Any] = field(default_factory=dict)
