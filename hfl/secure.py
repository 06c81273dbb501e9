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

Distributed DP (``secure_agg={"dp": {...}}``): each client clips its update, rotates,
rounds and noises it (:class:`dp.DistributedDP`) before it enters the secure sum, so
the server unmasks only a noised sum; see ``dp.distributed`` for the pipeline and
what each party learns, and ``dp.secagg`` for how the integers ride SecAgg. The
settings are ``clip`` and either ``noise_multiplier`` or ``target_epsilon`` with
``num_rounds`` (the smallest multiplier whose ε after that many rounds is within the
target), ``bits`` (16), ``kind`` (``"gaussian"`` or ``"skellam"``), ``delta`` (1e-5)
and ``overflow_prob``. Updates are
weighted equally (the sensitivity argument needs it): the new model is the old one
plus the noised mean of the survivors' clipped updates. The DP modulus is checked
against overflow when each round is configured, before any client trains, with the
model's real dimension; ε is accounted for the fewest survivors the Shamir
threshold allows and reported in the round's fit metrics (``dp_epsilon``,
``dp_epsilon_round``, ``dp_delta``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from party import ConfigError, Party, PartyUnavailable, TesseraError

log = logging.getLogger("hfl.secure")

#: keys of ``secure_agg=`` settings that are not SecAggParams fields
_HFL_KEYS = ("client_timeout_s", "dp")

#: keys of the ``dp`` setting
_DP_KEYS = ("noise_multiplier", "clip", "bits", "kind", "delta", "overflow_prob",
            "target_epsilon", "num_rounds")

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
    if "dp" in out:
        n = num_clients if num_clients is not None else 10
        _dp_config(out, num_clients=max(3, n), dim=1000)  # the real dim is checked each round
    return out


def _dp_config(settings: Mapping[str, Any], *, num_clients: int, dim: int) -> Any:
    """The round's :class:`dp.DistributedDP`, or None without a ``dp`` setting."""
    dp = settings.get("dp")
    if dp is None:
        return None
    if not isinstance(dp, Mapping):
        raise ConfigError(f"secure_agg: 'dp' must be a table of settings, got {type(dp).__name__}")
    bad = sorted(set(dp) - set(_DP_KEYS))
    if bad:
        raise ConfigError(f"secure_agg: unknown dp setting(s) {bad}; known: {list(_DP_KEYS)}")
    if "clip" not in dp:
        raise ConfigError("secure_agg: dp needs 'clip'")
    if ("noise_multiplier" in dp) == ("target_epsilon" in dp):
        raise ConfigError("secure_agg: dp needs 'noise_multiplier' or 'target_epsilon' (one)")
    if "target_epsilon" in dp and "num_rounds" not in dp:
        raise ConfigError("secure_agg: dp 'target_epsilon' needs 'num_rounds' (the planned rounds)")
    from secure_agg import SecAggParams

    # the Shamir threshold bounds how few clients a round can finish with
    core = {k: v for k, v in _core(settings).items() if k not in ("num_clients", "vector_length")}
    t = SecAggParams(num_clients=num_clients, vector_length=1, **core).t
    key = tuple(sorted((k, v) for k, v in dp.items()))
    return _dp_cached(key, dim, num_clients, min(t, num_clients))


@functools.lru_cache(maxsize=64)
def _dp_cached(key: tuple[tuple[str, Any], ...], dim: int, clients: int, threshold: int) -> Any:
    from dp import DistributedDP

    dp = dict(key)
    kw = {k: v for k, v in dp.items() if k not in ("delta", "target_epsilon", "num_rounds")}
    if "target_epsilon" not in dp:
        return DistributedDP(dim=dim, clients=clients, threshold=threshold, **kw)
    # the smallest noise multiplier whose epsilon after num_rounds is within the target
    target, rounds = float(dp["target_epsilon"]), int(dp["num_rounds"])
    delta = float(dp.get("delta", 1e-5))

    def make(z: float) -> Any:
        return DistributedDP(dim=dim, clients=clients, threshold=threshold,
                             noise_multiplier=z, **kw)

    from dp.accounting import smallest_noise

    try:
        hi = smallest_noise(lambda z: make(z).epsilon(rounds, delta), target)
    except ConfigError as e:
        raise ConfigError(f"secure_agg: {e}") from None
    log.info("distributed DP: noise multiplier %.4f gives epsilon <= %g after %d rounds "
             "(delta %g, %d clients, threshold %d)", hi, target, rounds, delta, clients, threshold)
    return make(hi)


def dp_round_metrics(settings: Mapping[str, Any], rounds_done: int) -> dict[str, float]:
    """ε after ``rounds_done`` distributed-DP rounds with these round settings ({} without dp)."""
    cfg = _dp_config(settings, num_clients=int(settings["num_clients"]),
                     dim=int(settings["vector_length"]))
    if cfg is None:
        return {}
    delta = float(settings["dp"].get("delta", 1e-5))
    total = cfg.epsilon(rounds_done, delta)
    before = cfg.epsilon(rounds_done - 1, delta) if rounds_done > 1 else 0.0
    return {"dp_epsilon": total, "dp_epsilon_round": 0.0 if math.isinf(before) else total - before,
            "dp_delta": delta,
            "dp_noise_multiplier": float(cfg.noise_multiplier), "dp_bits": float(cfg.bits)}


def round_params(settings: Mapping[str, Any], *, num_clients: int, dim: int,
                 client_timeout_s: float) -> dict[str, Any]:
    """What one round's FitIns carries: every SecAggParams field, plus the client's wait.

    With distributed DP this is where the modulus is checked against the model's real
    dimension (ConfigError before any client trains).
    """
    out = {**settings, "num_clients": num_clients, "vector_length": dim,
           "client_timeout_s": client_timeout_s}
    _params(out)
    return out


def _params(d: Mapping[str, Any]) -> Any:
    from secure_agg import SecAggParams

    core = {k: v for k, v in d.items() if k not in _HFL_KEYS}
    cfg = _dp_config(d, num_clients=int(d["num_clients"]), dim=int(d["vector_length"]))
    if cfg is not None:
        from dp.secagg import secagg_settings

        core.update(secagg_settings(cfg))
    return SecAggParams(**core)


def client_round(party: Party, server: str, delta: np.ndarray, weight: int, *, session: str,
                 params: Mapping[str, Any]) -> bool:
    """Take part in one secure aggregation; True when this update is in the sum.

    A round that fails on the server's side (quorum lost, excluded, server's
    messages invalid) is logged and returns False: the client stays in the
    federation. Only a server that is gone ends the client (PartyUnavailable).
    """
    from secure_agg import run_client

    p = _params(params)
    cfg = _dp_config(params, num_clients=int(params["num_clients"]),
                     dim=int(params["vector_length"]))
    if cfg is not None:  # clip, rotate, round and noise before anything leaves this client
        from dp.secagg import client_input, round_seed

        # the noise's generator: seeded from the OS, never from anything another party knows
        # (PCG64DXSM: numpy's recommended PCG variant, and its exponentials are 1.7x faster)
        vec = client_input(cfg, np.asarray(delta, np.float64), round_seed(session, 0),
                           np.random.Generator(np.random.PCG64DXSM()))  # int64
        weight = 1
    else:
        vec = np.asarray(delta, np.float64)
    try:
        out = run_client(party, server, vec, weight=int(weight), params=p,
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
    from secure_agg import release_client

    for c in clients:
        # the round's handshake leaves it out; an Abort waits for a client already past it
        with contextlib.suppress(PartyUnavailable):
            release_client(party, c, session=session, round=0, reason=reason)


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
    cfg = _dp_config(params, num_clients=int(params["num_clients"]),
                     dim=int(params["vector_length"]))
    if cfg is not None:  # the noised sum of clipped updates; each survivor weighs 1
        from dp.secagg import round_seed, server_sum

        return (server_sum(cfg, res.sum, round_seed(session, 0)), float(res.total_weight),
                list(res.survivors), dict(res.dropped))
    return res.sum, float(res.total_weight), list(res.survivors), dict(res.dropped)
