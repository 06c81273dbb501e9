"""The seam between HFL and ``secure_agg/``: one SecAgg+ weighted-sum round per fit round.

Each sampled client trains, then sends the server only its example count and
metrics in the clear, and its update ``Δ = w_local − w_global`` (flattened,
float64) through secure aggregation with weight ``n = num_examples``. The server
learns ``Σ n_k Δ_k`` and ``Σ n_k`` over the clients that finished, never one Δ.
Every round uses a fresh session id (``<server run id>-r<round>``; the run id is
new each time a server starts), so a resumed round never reuses keys or seeds.

Dropouts are handled as in ``secure_agg``: a client lost after training is left
out of the sum; fewer than the threshold aborts the round (``QuorumLost``) and
the global model stays as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from party import ConfigError, Party, PartyUnavailable, Tag, TesseraError

log = logging.getLogger("hfl.secure")

#: keys of ``secure_agg=`` settings that are not SecAggParams fields
_HFL_KEYS = ("client_timeout_s",)


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse unknown or invalid ``secure_agg=`` settings now, not mid-training."""
    from secure_agg import SecAggParams

    fields = {f.name for f in dataclasses.fields(SecAggParams)} - {"num_clients", "vector_length"}
    bad = sorted(set(settings) - fields - set(_HFL_KEYS))
    if bad:
        raise ConfigError(f"secure_agg: unknown setting(s) {bad}; known: {sorted(fields)}")
    out = dict(settings)
    core = {k: v for k, v in out.items() if k not in _HFL_KEYS}
    SecAggParams(num_clients=max(3, 10), vector_length=1, **core)  # ConfigError if invalid
    return out


def round_params(settings: Mapping[str, Any], *, num_clients: int, dim: int,
                 client_timeout_s: float) -> dict[str, Any]:
    """What one round's FitIns carries: every SecAggParams field, plus the client's wait."""
    return {**settings, "num_clients": num_clients, "vector_length": dim,
            "client_timeout_s": client_timeout_s}


def _params(d: Mapping[str, Any]) -> Any:
    from secure_agg import SecAggParams

    return SecAggParams(**{k: v for k, v in d.items() if k not in _HFL_KEYS})


def client_round(party: Party, server: str, delta: np.ndarray, weight: int, *, session: str,
                 params: Mapping[str, Any]) -> bool:
    """Take part in one secure aggregation; True when this update is in the sum.

    A round that fails on the server's side (quorum lost, excluded, server's
    messages invalid) is logged and returns False: the client stays in the
    federation. Only a server that is gone ends the client (PartyUnavailable).
    """
    from secure_agg import run_client

    p = _params(params)
    try:
        out = run_client(party, server, np.asarray(delta, np.float64), weight=int(weight), params=p,
                         session=session, timeout_s=float(params.get("client_timeout_s", 600.0)))
    except PartyUnavailable:
        raise
    except TesseraError as e:
        log.warning("%s: secure aggregation %s failed: %s", party.name, session, e)
        return False
    if not out.completed:
        log.warning("%s: left out of secure aggregation %s: %s", party.name, session, out.reason)
    return bool(out.completed)


def release_clients(party: Party, clients: list[str], *, session: str, reason: str) -> None:
    """Tell clients that will not be in this round's aggregation to stop waiting for it.

    A client that finished training too late (a straggler), or every client of a
    round that cannot run secure aggregation, gets an ``Abort`` where it will look
    first, so it goes back to serving the server at once instead of waiting.
    """
    from secure_agg.messages import Abort
    from secure_agg.runner import PROTOCOL

    for c in clients:
        with contextlib.suppress(PartyUnavailable):
            party.send(c, Tag(PROTOCOL, session, 0, "public_keys"), Abort(session, 0, reason))


def server_round(party: Party, clients: list[str], *, session: str, params: Mapping[str, Any],
                 ) -> tuple[np.ndarray, float, list[str], dict[str, str]]:
    """Run one secure aggregation as the server.

    Returns:
        (Σ n_k Δ_k as float64, Σ n_k, clients in the sum, dropped client -> stage).

    Raises:
        QuorumLost: fewer than the threshold remained; nothing was aggregated.
    """
    from secure_agg import run_server

    res = run_server(party, clients, params=_params(params), session=session)
    return res.sum, float(res.total_weight), list(res.survivors), dict(res.dropped)
