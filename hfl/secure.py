"""The seam between HFL and ``secure_agg/``: one SecAgg+ weighted-sum round per fit round.

Each sampled client trains, then sends the server only its example count and
metrics in the clear, and its update ``Δ = w_local − w_global`` (flattened,
float64) through secure aggregation with weight ``n = num_examples``. The server
learns ``Σ n_k Δ_k`` and ``Σ n_k`` over the clients that finished, never one Δ.
Every round uses a fresh session id (``<server run id>-r<round>``; the run id is
new each time a server starts), so a resumed round never reuses keys or seeds.

Too few clients is refused at start-up: :func:`min_clients` is the smallest
cohort :class:`secure_agg.SecAggParams` accepts with the given settings (3 with
the defaults: with 2 clients each could subtract its own update from the sum and
learn the other's, and the Shamir threshold needs 3 share holders), and
:func:`check_clients` raises :class:`ConfigError` naming the number of clients
and that minimum (``hfl.simulate`` calls it; so does :func:`check_settings` when
given ``num_clients``).

Dropouts are handled as in ``secure_agg``: a client lost after training is left
out of the sum; fewer than the threshold aborts the round (``QuorumLost``) and
the global model stays as it was. The server logs that as an error and records
it in the round's ``history.rounds[i]["secure_agg"]`` (``"skipped: ..."`` when
fewer than the minimum finished training, ``"aborted: ..."`` on ``QuorumLost``).
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

#: :func:`min_clients` looks for a feasible cohort up to this size
_MAX_SEARCH = 1024


def _core(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in _HFL_KEYS}


def min_clients(settings: Mapping[str, Any] | None = None) -> int:
    """The fewest clients one secure aggregation round can run with under ``settings``.

    Derived from :class:`secure_agg.SecAggParams` rather than hard-coded: its floor
    of 3 clients (with 2, each learns the other's update by subtracting its own
    from the sum), raised by settings such as an explicit ``threshold`` or a high
    ``dropout_fraction`` until the Shamir threshold is feasible. ConfigError when
    the settings are invalid for every cohort up to 1024 clients.
    """
    from secure_agg import SecAggParams

    core = _core(settings or {})
    err: ConfigError | None = None
    for n in range(1, _MAX_SEARCH + 1):
        try:
            SecAggParams(num_clients=n, vector_length=1, **core)
        except ConfigError as e:
            err = e
            continue
        return n
    raise ConfigError(f"secure_agg: settings {core} fit no cohort of up to {_MAX_SEARCH} clients: {err}")


def check_clients(settings: Mapping[str, Any] | None, num_clients: int, *,
                  context: str = "the federation") -> None:
    """ConfigError unless a secure aggregation round of ``num_clients`` clients can run.

    ``context`` says where the number comes from, for the message (e.g.
    ``"simulate(num_clients=2)"``). Never a silent skip: a cohort below
    :func:`min_clients` would aggregate nothing in any round.
    """
    from secure_agg import SecAggParams

    core = _core(settings or {})
    need = min_clients(core)
    try:
        SecAggParams(num_clients=num_clients, vector_length=1, **core)
    except ConfigError as e:
        if num_clients < need:
            raise ConfigError(
                f"secure_agg: {context} has {num_clients} client{'s' * (num_clients != 1)}, but "
                f"secure aggregation needs at least {need} ({e}); add clients or turn secure_agg off"
            ) from None
        raise ConfigError(f"secure_agg: these settings do not work with {num_clients} clients "
                          f"({context}): {e}") from None


def check_settings(settings: Mapping[str, Any], *, num_clients: int | None = None,
                   context: str = "the federation") -> dict[str, Any]:
    """Refuse unknown or invalid ``secure_agg=`` settings now, not mid-training.

    With ``num_clients`` (the clients of one round) also refuse a cohort too small
    for secure aggregation (:func:`check_clients`); without it the settings are
    checked for a cohort of 10.
    """
    from secure_agg import SecAggParams

    fields = {f.name for f in dataclasses.fields(SecAggParams)} - {"num_clients", "vector_length"}
    bad = sorted(set(settings) - fields - set(_HFL_KEYS))
    if bad:
        raise ConfigError(f"secure_agg: unknown setting(s) {bad}; known: {sorted(fields)}")
    out = dict(settings)
    if num_clients is not None:
        check_clients(out, num_clients, context=context)
    else:
        SecAggParams(num_clients=10, vector_length=1, **_core(out))  # ConfigError if invalid
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
    from party.handshake import leave_out
    from secure_agg.messages import Abort
    from secure_agg.runner import PROTOCOL, _hs_session

    for c in clients:
        # the round's handshake is where it looks first; the Abort covers a client past it
        leave_out(party, c, protocol=PROTOCOL, session=_hs_session(session, 0))
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
