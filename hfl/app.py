"""The Message API's shared types under Flower's ``flwr.app`` names.

``Array``, ``ArrayRecord``, ``ConfigRecord``, ``MetricRecord``, ``RecordDict``,
``Message``, ``Metadata``, ``Error``, ``MessageType`` and ``Context`` (defined in
:mod:`hfl.common.record` and :mod:`hfl.common.message`).
"""

from hfl.common.message import DEFAULT_TTL, Context, Error, Message, MessageType, Metadata
from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from hfl.common.typing import (
    ConfigRecordValues,
    ConfigScalar,
    ConfigScalarList,
    MetricRecordValues,
    MetricScalar,
    MetricScalarList,
    UserConfig,
    UserConfigValue,
)

__all__ = [
    "DEFAULT_TTL",
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "ConfigRecordValues",
    "ConfigScalar",
    "ConfigScalarList",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "MetricRecordValues",
    "MetricScalar",
    "MetricScalarList",
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
]
