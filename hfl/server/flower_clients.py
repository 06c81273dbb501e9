"""Flower's server helpers for its own ``ClientProxy`` objects: a thread per client.

``Server(client_manager=..., strategy=...)`` (no party) drives the proxies registered
with that manager through :func:`fit_clients` and :func:`evaluate_clients`, as Flower's
``flwr.server.server`` does: an exception or a non-OK status is a failure.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from hfl.common.typing import Code, EvaluateIns, EvaluateRes, FitIns, FitRes
from hfl.server.client_proxy import ClientProxy
from hfl.server.party_clients import ClientFailure

FitResultsAndFailures = tuple[list[tuple[ClientProxy, FitRes]], list[tuple[ClientProxy, FitRes] | BaseException]]
EvaluateResultsAndFailures = tuple[
    list[tuple[ClientProxy, EvaluateRes]], list[tuple[ClientProxy, EvaluateRes] | BaseException]]


def fit_client(client: ClientProxy, ins: FitIns, timeout: float | None,
               group_id: int) -> tuple[ClientProxy, FitRes]:
    """Refine parameters on a single client."""
    fit_res = client.fit(ins, timeout=timeout, group_id=group_id)
    return client, fit_res


def evaluate_client(client: ClientProxy, ins: EvaluateIns, timeout: float | None,
                    group_id: int) -> tuple[ClientProxy, EvaluateRes]:
    """Evaluate parameters on a single client."""
    evaluate_res = client.evaluate(ins, timeout=timeout, group_id=group_id)
    return client, evaluate_res


def _collect(finished: set[concurrent.futures.Future[Any]]) -> tuple[list[Any], list[Any]]:
    results: list[Any] = []
    failures: list[Any] = []
    for future in finished:
        failure = future.exception()
        if failure is not None:
            failures.append(failure)
            continue
        result = future.result()
        (results if result[1].status.code == Code.OK else failures).append(result)
    return results, failures


def fit_clients(client_instructions: list[tuple[ClientProxy, FitIns]], max_workers: int | None,
                timeout: float | None, group_id: int) -> FitResultsAndFailures:
    """Refine parameters concurrently on all selected clients (Flower's: a thread pool;
    an exception or a non-OK status is a failure)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as executor:
        submitted = {executor.submit(fit_client, p, ins, timeout, group_id)
                     for p, ins in client_instructions}
        finished, _ = concurrent.futures.wait(fs=submitted, timeout=None)
    return _collect(finished)


def evaluate_clients(client_instructions: list[tuple[ClientProxy, EvaluateIns]], max_workers: int | None,
                     timeout: float | None, group_id: int) -> EvaluateResultsAndFailures:
    """Evaluate parameters concurrently on all selected clients."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as executor:
        submitted = {executor.submit(evaluate_client, p, ins, timeout, group_id)
                     for p, ins in client_instructions}
        finished, _ = concurrent.futures.wait(fs=submitted, timeout=None)
    return _collect(finished)



def failure_reason(f: tuple[ClientProxy, Any] | BaseException) -> tuple[str, str]:
    """(client, why) of one entry of a strategy's ``failures``."""
    if isinstance(f, ClientFailure):
        return f.cid, f.reason
    if isinstance(f, BaseException):
        return "?", f"{type(f).__name__}: {f}"
    proxy, res = f
    return proxy.cid, f"status {res.status.code.name}: {res.status.message}"
