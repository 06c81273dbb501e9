"""Test and simulation helpers (like ``trio.testing``)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from party.config import FederationConfig, load_federation, write_federation
from party.errors import RemoteProtocolError
from party.faultproxy import FaultProxy, sigstop  # noqa: F401  (re-exported for tests)
from party.fsm import Machine, StageError, Table, check_table
from party.inmemory import InMemoryNetwork
from party.party import Party, Role


def run_parties(
    fns: Mapping[str, Callable[[Party], Any]],
    *,
    roles: Mapping[str, Role | str] | None = None,
    network: InMemoryNetwork | None = None,
    timeout_s: float = 300.0,
    make_party: Callable[[str], Party] | None = None,
    transport: str = "inmemory",
) -> dict[str, Any]:
    """Run ``fns[name](party)`` for each party in its own thread; return the results.

    Parties talk over a fresh :class:`InMemoryNetwork` unless ``make_party``
    builds them (e.g. over gRPC). The first exception raised by any party is
    re-raised here (with the party name added as a note) after all threads end.
    ``transport="grpc"`` runs the same functions over a real router on
    127.0.0.1 (a free port) with mutual TLS and fresh certificates.
    """
    if transport == "grpc" and make_party is None:
        with grpc_federation(list(fns), roles=roles) as (config, _router):
            from party.grpc_transport import connect

            return run_parties(
                fns, timeout_s=timeout_s, make_party=lambda n: connect(config, n)
            )
    if transport not in ("inmemory", "grpc"):
        raise ValueError(f"transport must be 'inmemory' or 'grpc', got {transport!r}")
    roles = roles or {}
    net = network or InMemoryNetwork(list(fns))
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def body(name: str) -> None:
        try:
            party = make_party(name) if make_party else Party(
                name, net.transport(name), role=roles.get(name, Role.PARTY)
            )
            try:
                results[name] = fns[name](party)
            finally:
                if make_party is not None:
                    party.close()
        except BaseException as e:
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


@contextlib.contextmanager
def grpc_federation(
    names: Sequence[str],
    *,
    roles: Mapping[str, Role | str] | None = None,
    directory: str | Path | None = None,
    max_message_mb: int | None = None,
) -> Iterator[tuple[FederationConfig, Any]]:
    """A router on 127.0.0.1 (free port) with fresh certificates; yields (config, router).

    The router stops, and the temporary directory goes, when the block ends.
    """
    from party.certs import init_certs
    from party.router import Router

    roles = roles or {}
    with contextlib.ExitStack() as stack:
        d = Path(directory) if directory else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        init_certs(d / "certs", list(names), overwrite=True)
        cfg_path = write_federation(
            d / "fed.toml", name="test", router="127.0.0.1:1",
            parties={n: Role(roles.get(n, Role.PARTY)).value for n in names},
        )
        config = load_federation(cfg_path)
        if max_message_mb is not None:
            config = dataclasses.replace(config, max_message_bytes=max_message_mb << 20)
        router = Router(config, listen="127.0.0.1:0").start()
        stack.callback(router.stop)
        config = dataclasses.replace(config, router=f"127.0.0.1:{router.port}")
        yield config, router


@contextlib.contextmanager
def faulty_grpc_federation(
    names: Sequence[str],
    *,
    roles: Mapping[str, Role | str] | None = None,
    directory: str | Path | None = None,
) -> Iterator[tuple[dict[str, FederationConfig], dict[str, Any], Any]]:
    """A router on 127.0.0.1 with one :class:`FaultProxy` in front of it per party.

    Yields ``(configs, proxies, router)``: ``configs[name]`` dials that party's own
    proxy, so a fault can hit one party's link (``proxies[name].reset_after(...)``)
    or every link. Use with ``run_parties(fns, make_party=lambda n: connect(configs[n], n))``.
    """
    with grpc_federation(names, roles=roles, directory=directory) as (config, router), \
            contextlib.ExitStack() as stack:
        proxies = {n: stack.enter_context(FaultProxy(("127.0.0.1", router.port))) for n in names}
        configs = {n: dataclasses.replace(config, router=proxies[n].address) for n in names}
        yield configs, proxies, router


#: The network faults every protocol must survive with the fault-free result (issue 12).
FAULTS = ("latency", "bandwidth", "reset", "stall")


def apply_fault(fault: str, proxies: Mapping[str, Any], victim: str, *, stall_s: float = 30.0,
                reset_after_bytes: int = 200_000) -> None:
    """Arm one of :data:`FAULTS`: 50 ms each way and 10 Mbit/s on every link; a reset in the
    middle of a message, or a ``stall_s`` stall that then heals, on ``victim``'s link."""
    if fault == "latency":
        for px in proxies.values():
            px.set_latency(0.05)
    elif fault == "bandwidth":
        for px in proxies.values():
            px.set_bandwidth(10e6)
    elif fault == "reset":
        proxies[victim].reset_after(reset_after_bytes)
    elif fault == "stall":
        proxies[victim].stall(stall_s)  # from the start: the run's first messages wait it out
    elif fault != "none":
        raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")


# ---- state machines ----------------------------------------------------------------


def check_transitions(make: Callable[[], Machine[Any]], calls: Mapping[str, Callable[[Any], Any]],
                      stages: type[enum.Enum]) -> int:
    """Drive every (event, stage) pair of a :class:`party.fsm.Machine` through its guard.

    For each event of the machine's table and each member of ``stages``, a fresh
    machine from ``make()`` is put in that stage and ``calls[event](machine)`` runs:

    * a pair the table refuses must raise :class:`party.fsm.StageError` naming the
      method, and leave the stage as it was (a ``remote`` variant, chosen by a peer's
      message, raises ``RemoteProtocolError`` instead and aborts the machine);
    * a pair it allows must get past the guard: the call may still fail on the dummy
      arguments (any error but ``StageError``), and if it returns, the machine must be
      in the table's next stage.

    ``calls`` must name exactly the table's events. Returns the number of pairs driven.
    """
    table = make().transitions
    check_table(table, stages)
    if set(calls) != set(table):
        raise AssertionError(f"calls {sorted(calls)} != the table's events {sorted(table)}")
    pairs = 0
    for event, moves in table.items():
        method = event.partition("[")[0]
        for stage in stages:
            m = make()
            m.stage = stage
            pairs += 1
            if stage not in moves:
                after = stage
                try:
                    calls[event](m)
                except StageError as e:
                    if f"{method}()" not in str(e):
                        raise AssertionError(f"{event} in {stage.name}: {e} does not name "
                                             f"{method}()") from e
                except RemoteProtocolError as e:  # a peer's command the stage does not allow
                    if f"{method}()" not in str(e):
                        raise AssertionError(f"{event} in {stage.name}: {e} does not name "
                                             f"{method}()") from e
                    after = m.aborted if m.aborted is not None else stage
                else:
                    raise AssertionError(f"{event} in stage {stage.name} was not refused")
                if m.stage is not after:
                    raise AssertionError(f"refused {event} moved {stage.name} -> {m.stage.name}")
                continue
            try:
                calls[event](m)
            except StageError as e:
                raise AssertionError(f"{event} in {stage.name} is allowed by the table "
                                     f"but refused: {e}") from e
            except Exception:  # dummy arguments: the guard let it through
                continue
            if m.stage is not moves[stage]:
                raise AssertionError(f"{event} from {stage.name} left {m.stage.name}, the "
                                     f"table says {moves[stage].name}")
    return pairs


@contextlib.contextmanager
def traced(*machines: Machine[Any]) -> Iterator[list[tuple[str, Any, Any]]]:
    """Record the transitions ``machines`` take in the block: (event, from, to) triples."""
    trace: list[tuple[str, Any, Any]] = []
    for m in machines:
        m._trace = trace
    try:
        yield trace
    finally:
        for m in machines:
            m._trace = None


def uncovered(table: Table[Any], trace: Sequence[tuple[str, Any, Any]]) -> list[str]:
    """The table's (event, stage) pairs a recorded run never took (empty: all covered).

    A transition in ``trace`` that the table does not have is an error (the guard
    would have refused it), so a run that is covered follows the table exactly.
    """
    seen = {(e, a) for e, a, _ in trace}
    for e, a, b in trace:
        if table.get(e, {}).get(a) is not b:
            raise AssertionError(f"recorded {e}: {a} -> {b} is not in the table")
    return sorted(f"{e} in {a.name}" for e, moves in table.items() for a in moves
                  if (e, a) not in seen)


# ---- transports: faulty transport, receive spy (issue 13) -----------------------------------
# FaultyTransport lives in party.faulty; the transport conformance suite built on this module
# is party.conformance (check_transport, CHECKS, inmemory_parties, grpc_parties, with_faults).
from party.faulty import FaultyTransport  # noqa: E402, F401  (re-exported)


def spy_received(transport: Any) -> list[Any]:
    """Record, decoded, every message ``transport`` hands out from now on; returns the list.

    For transcript tests (what a party learns): ``seen = spy_received(net.transport("bank"))``,
    then build the party on that transport and run it.
    """
    from party.codec import decode

    seen: list[Any] = []
    real = transport.recv

    def recv(src: str, tag: Any, *, timeout_s: float) -> Any:
        payload = real(src, tag, timeout_s=timeout_s)
        seen.append(decode(bytes(payload)))
        return payload

    transport.recv = recv
    return seen

