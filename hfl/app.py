"""The Message API's shared types under Flower's ``flwr.app`` names.

``Array``, ``ArrayRecord``, ``ConfigRecord``, ``MetricRecord``, ``RecordDict``,
``Message``, ``Metadata``, ``Error``, ``MessageType`` and ``Context`` (defined in
:mod:`hfl.common.record` and :mod:`hfl.common.message`).
"""

from hfl.common.message import Context, Error, Message, MessageType, Metadata
from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "RecordDict",
]
