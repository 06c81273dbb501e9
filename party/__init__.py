"""party: the one party/transport layer everything in tessera is written against.

Public API here: :class:`Party`, :class:`Role`, :class:`Tag`, :class:`Transport`,
:class:`InMemoryNetwork`, :class:`InMemoryTransport`, the codec (:func:`encode`,
:func:`decode`, :func:`wire`), :func:`write_atomic`, and every error class. Over the
network (imported on demand, so in-memory users never load gRPC):
``party.grpc_transport.connect(config, name)`` / ``GrpcTransport``,
``party.router.Router`` (``python -m party.router``), ``party.config.load_federation``,
``party.certs`` (``python -m party.certs``), ``party.testing.run_parties``.
"""

from __future__ import annotations

import logging

from party import errors
from party.codec import MAX_MESSAGE_BYTES, decode, encode, wire
from party.errors import *  # noqa: F403 - every error class, listed once in errors.__all__
from party.files import write_atomic
from party.inmemory import InMemoryNetwork, InMemoryTransport
from party.party import Party, Role
from party.transport import Tag, Transport, TransportStats

logging.getLogger("party").addHandler(logging.NullHandler())

__all__ = [
    "MAX_MESSAGE_BYTES",
    "InMemoryNetwork",
    "InMemoryTransport",
    "Party",
    "Role",
    "Tag",
    "Transport",
    "TransportStats",
    "decode",
    "encode",
    "wire",
    "write_atomic",
]
__all__ += errors.__all__
