"""Test and simulation helpers (like ``trio.testing``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from party.inmemory import InMemoryNetwork
from party.party import Party, Role


def run_parties(
    fns: Mapping[str, Callable[[Party], Any]],
    *,
    roles: Mapping[str, Role | str] | None = None,
    network: InMemoryNetwork | None = None,
    timeout_s: float = 300.0,
    make_party: Callable[[str], Party] | None = None,
) -> dict[str, Any]:
    """Run ``fns[name](party)`` for each party in its own thread; return the results.

    Parties talk over a fresh :class:`InMemoryNetwork` unless ``make_party``
    builds them (e.g. over gRPC). The first exception raised by any party is
    re-raised here (with the party name added as a note) after all threads end.
    """
    roles = roles or {}
    net = network or InMemoryNetwork(list(fns))
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def body(name: str) -> None:
        try:
            party = make_party(name) if make_party else Party(
                name, net.transport(name), role=roles.get(name, Role.PARTY)
            )
            results[name] = fns[name](party)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors[name] = e

    threads = [threading.Thread(target=body, args=(n,), name=f"party-{n}", daemon=True) for n in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
        if t.is_alive():
            raise TimeoutError(f"party thread {t.name} still running after {timeout_s} s")
    if errors:
        name, exc = next(iter(errors.items()))
        exc.add_note(f"(raised by party {name!r}; {len(errors)} parties failed: {sorted(errors)})")
        raise exc
    return results
