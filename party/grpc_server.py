"""The gRPC servers of a federation's hub (the router and the enrollment endpoint) are set
up alike: a thread pool, one generic service, TLS, and a clear error when the port is taken."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc

from party.errors import ConfigError


def bind_server(service: str, methods: Mapping[str, grpc.RpcMethodHandler], listen: str,
                creds: grpc.ServerCredentials, *, name: str, workers: int, max_rpcs: int,
                options: Sequence[tuple[str, Any]] = (), hint: str) -> tuple[grpc.Server, int]:
    """A server of ``service`` (its ``methods``; threads named after it) bound to ``listen``
    with ``creds``, not yet started, and its port. ``so_reuseport`` is off: a second server
    on a port in use must fail, not share the port.

    Raises:
        ConfigError: "``name`` cannot listen on ``listen``" followed by ``hint``.
    """
    threads = futures.ThreadPoolExecutor(max_workers=workers,
                                         thread_name_prefix=service.rpartition(".")[2].lower())
    server = grpc.server(threads, options=[*options, ("grpc.so_reuseport", 0)],
                         maximum_concurrent_rpcs=max_rpcs)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
    try:
        port = server.add_secure_port(listen, creds)
    except RuntimeError:
        port = 0
    if not port:
        raise ConfigError(f"{name} cannot listen on {listen}{hint}")
    return server, port


__all__ = ["bind_server"]
