"""Secure aggregation: SecAgg (Bonawitz et al. CCS'17) and SecAgg+ (Bell et al. CCS'20).

The server learns Σ w_u x_u and Σ w_u over the clients that finished the
round, and nothing about any single x_u, even when clients drop out at any
stage (up to n − t of each client's share holders). Security argument and
stages: :mod:`secure_agg.client`; configuration checks: :mod:`secure_agg.params`.

Tags: :func:`round_tag` (``Tag("secagg", session, round, step)``, steps :data:`STEPS`)
and :func:`handshake_session`; a server that leaves a client out of a round tells it
with :func:`release_client` (what ``hfl.secure`` needs; it never builds the tags itself).

Typical use (one round; a fresh ``round`` or ``session`` every time)::

    params = SecAggParams(num_clients=len(clients), vector_length=d)
    # aggregator
    res = run_server(party, clients, params=params, session=run_id, round=r)
    new_model = res.mean                      # Σ w_u x_u / Σ w_u
    # each client
    run_client(party, "server", update, weight=num_examples, params=params,
               session=run_id, round=r)
"""

from __future__ import annotations

from party.errors import QuorumLost
from secure_agg.client import ClientAborted, SecAggClient, Stage
from secure_agg.keys import ShareDecryptionError
from secure_agg.params import SecAggParams, default_degree, find_degree
from secure_agg.runner import (
    PROTOCOL,
    STEPS,
    ClientOutcome,
    handshake_session,
    release_client,
    round_tag,
    run_client,
    run_server,
    secure_sum,
)
from secure_agg.server import SecAggResult, SecAggServer, ServerStage

__all__ = [
    "PROTOCOL",
    "STEPS",
    "ClientAborted",
    "ClientOutcome",
    "QuorumLost",
    "SecAggClient",
    "SecAggParams",
    "SecAggResult",
    "SecAggServer",
    "ServerStage",
    "ShareDecryptionError",
    "Stage",
    "default_degree",
    "find_degree",
    "handshake_session",
    "release_client",
    "round_tag",
    "run_client",
    "run_server",
    "secure_sum",
]
