"""The server's side of secure aggregation (SecAgg+ through :mod:`hfl.secure`).

With ``Server(secure_agg=...)`` the server never sees a client's model: the clients
that trained (the cohort) run a SecAgg+ round and the server learns only Σ n_k Δ_k
and Σ n_k over the survivors; :func:`secure_aggregate` turns that into the weighted
mean and hands it to the strategy's ``aggregate_mean``. Fewer than 3 clients, or a
lost quorum, leaves the model unchanged for that round (logged and recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from hfl import messages as wire
from hfl.common.typing import Metrics, NDArrays, Parameters
from hfl.server.client_proxy import ClientProxy
from hfl.server.strategy import Strategy
from hfl.server.strategy.aggregate import cast_like, unflatten
from party import ConfigError, Party, QuorumLost

log = logging.getLogger("hfl.server")


def check_secure_strategy(strategy: Strategy) -> None:
    """A strategy runs under secure aggregation only if its rule needs no single client's model."""
    if not strategy.supports_secure_aggregation:
        raise ConfigError(
            f"secure_agg needs a strategy that aggregates a weighted sum; "
            f"{type(strategy).__name__} does not implement aggregate_mean for its "
            "aggregate_fit (a custom aggregate_fit needs every client's model, which secure "
            "aggregation never shows the server): turn secure_agg off or use a built-in rule"
        )


def secure_settings(secure_agg: bool | Mapping[str, Any], party: Party | None, strategy: Strategy,
                    num_clients: int) -> dict[str, Any] | None:
    """The checked secure aggregation settings of a server (None: plain aggregation)."""
    if secure_agg is False:
        return None
    if party is None:
        raise ConfigError("secure_agg needs a Server over a tessera party")
    check_secure_strategy(strategy)
    from hfl.secure import check_settings

    # too few clients for secure aggregation is a start-up error, never a silent skip
    return check_settings({} if secure_agg is True else dict(secure_agg), num_clients=num_clients,
                          context=f"server {party.name!r}")


def secure_aggregate(party: Party, strategy: Strategy, rnd: int, params: NDArrays,
                     results: list[tuple[ClientProxy, wire.FitRes]], fail: dict[str, str],
                     record: dict[str, Any], *, session: str, round_params: dict[str, Any],
                     dp_rounds_done: int) -> tuple[Parameters | NDArrays | None, Metrics]:
    """Round ``rnd``'s aggregate from a SecAgg+ round among the clients in ``results``.

    ``fail`` (client -> why) are released from the round; ``record`` gets what happened.
    """
    from hfl.secure import dp_round_metrics, release_clients, server_round

    cohort = sorted(p.cid for p, _ in results)
    late = sorted(c for c in fail if c not in cohort)
    if len(cohort) < 3:
        record["secure_agg"] = f"skipped: {len(cohort)} clients finished training, need >= 3"
        log.error("round %d: secure aggregation needs >= 3 clients, %d finished; model "
                  "unchanged", rnd, len(cohort))
        release_clients(party, cohort + late, session=session,
                        reason=record["secure_agg"])
        return None, {}
    release_clients(party, late, session=session,
                    reason="dropped from this round (late or failed)")
    try:
        total_vec, total_n, survivors, dropped = server_round(
            party, cohort, session=session, params=round_params)
    except QuorumLost as e:
        record["secure_agg"] = f"aborted: {e}"
        log.error("round %d: secure aggregation aborted (%s); model unchanged", rnd, e)
        return None, {}
    record["secure_agg"] = {"survivors": len(survivors), "dropped": dropped}
    if total_n <= 0:
        return None, {}
    if getattr(strategy, "accept_failures", True) is False and (fail or dropped):
        return None, {}
    mean_delta = unflatten(total_vec / total_n, params)
    mean = [np.asarray(p, np.float64) + d for p, d in zip(params, mean_delta, strict=True)]
    mean = cast_like(mean, params) if all(p.dtype.kind == "f" for p in params) else mean
    alive = set(survivors)
    metrics = [(r.num_examples, r.metrics) for p, r in results if p.cid in alive]
    new_p, agg_metrics = strategy.aggregate_mean(rnd, mean, int(total_n), metrics)
    if "dp" in round_params:  # distributed DP: the privacy spent so far
        agg_metrics = {**agg_metrics, **dp_round_metrics(round_params, dp_rounds_done + 1)}
        log.info("round %d: distributed DP epsilon %.4f in total (delta %g)", rnd,
                 agg_metrics["dp_epsilon"], agg_metrics["dp_delta"])
    return new_p, agg_metrics
