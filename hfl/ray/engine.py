"""The driver's side of the Ray backend (sessions, job queue, lanes) and
:func:`simulate_on_ray`, the entry point of ``hfl.simulate(backend="ray")``."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hfl.ray.cluster import (
    _CONNECT_THREADS,
    SERVER,
    _ray,
    check_client_resources,
    log,
    pool_size,
    start_ray,
    stop_ray,
)
from hfl.ray.lane import _Lane
from hfl.ray.sessions import _Fast, _Job, _Session
from hfl.ray.worker import _ClientWorker
from party import InMemoryNetwork, Party, PartyUnavailable, Role, Tag, TesseraError
from party.codec import decode


class _ServerTransport(_Fast):
    """The server's in-memory transport, with what it sends virtual clients diverted to Ray."""

    def __init__(self, inner: Any, engine: _Engine) -> None:
        super().__init__(inner, sorted(engine.names))
        self._engine = engine

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        if self._engine.dropped and tag == self._engine.hello_tag:
            self._engine.reconnect_dropped()  # the server is between rounds: let them back in
        return super().recv(src, tag, timeout_s=timeout_s)

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        if self._engine.intercept(dst, tag, payload):
            self._inner.stats.on_send(len(payload))
            return
        self._inner.send(dst, tag, payload)


class _Engine:
    """The driver's side of the Ray backend: sessions, job queue, lanes."""

    def __init__(self, ray: Any, client_fn: Callable[..., Any], names: Sequence[str], *,
                 resources: dict[str, float], pool: int, timeout_s: float,
                 run_config: dict[str, Any], context_cls: type) -> None:
        from hfl.messages import HELLO_TAG, PROTOCOL

        self.ray = ray
        self.hfl = PROTOCOL
        self.hello_tag = HELLO_TAG
        self.names = list(names)
        self.resources = resources
        self.timeout_s = timeout_s
        self.stopping = False
        self.net = InMemoryNetwork([SERVER, *self.names])
        self.server_transport = _ServerTransport(self.net.transport(SERVER), self)
        self.server_inc = int(self.server_transport.incarnation)
        self.sessions: dict[str, _Session] = {}
        self.dropped: set[str] = set()  # disconnected mid-round; they reconnect between rounds
        self.index = {n: i for i, n in enumerate(self.names)}
        self.state: dict[str, dict[str, Any]] = {}
        self.route: dict[str, tuple[_Lane, int]] = {}
        self._tokens = 0
        self._token_lock = threading.Lock()
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self._cache: dict[int, tuple[Any, str, Any, bool]] = {}
        self._cache_lock = threading.Lock()
        # clients run one at a time ("compute"); message relaying runs beside them
        opts: dict[str, Any] = {"num_cpus": resources["num_cpus"], "num_gpus": resources["num_gpus"],
                                "max_concurrency": 4, "concurrency_groups": {"compute": 1},
                                "max_restarts": 0}
        if resources.get("memory"):
            opts["memory"] = resources["memory"]
        self._actor_cls = ray.remote(**opts)(_ClientWorker)
        self._actor_args = (client_fn, len(self.names), dict(run_config), SERVER, dict(resources),
                            context_cls)
        self.connector = ThreadPoolExecutor(max_workers=min(_CONNECT_THREADS, len(self.names)),
                                            thread_name_prefix="hfl-ray-connect")
        self.lanes = [_Lane(self, i) for i in range(pool)]

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every actor has started (imports done), so the first round's timeout
        measures the clients, not the pool's start. TesseraError after ``timeout_s``."""
        refs = [lane.actor.node.remote() for lane in self.lanes]
        ready, pending = self.ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        if pending:
            raise TesseraError(
                f"{len(pending)} of {len(refs)} Ray actors (client_resources={self.resources} "
                f"each) did not start within {timeout_s:g} s: the cluster may lack those "
                f"resources now (ray.available_resources(): {self.ray.available_resources()})")
        self.ray.get(ready)  # an actor that failed to start raises here

    def next_token(self) -> int:
        with self._token_lock:
            self._tokens += 1
            return self._tokens

    def new_actor(self) -> Any:
        return self._actor_cls.remote(*self._actor_args)

    # -- virtual clients' sessions ------------------------------------------------------------
    def connect_all(self) -> None:
        for n in sorted(self.names):  # the server handshakes in name order
            self.connector.submit(self.connect, n)

    def connect(self, name: str) -> None:
        """Connect ``name`` as a tessera client does: Hello, then the confirmed session handshake."""
        from hfl.messages import HELLO_TAG, Hello
        from party.handshake import open_run

        if self.stopping:
            return
        t = self.net.transport(name)
        inc = uuid.uuid4().hex[:16]
        self.sessions[name] = _Session(name, self.index[name], t, inc)
        party = Party(name, _Fast(t, [SERVER]), role=Role.CLIENT)
        try:
            party.send(SERVER, HELLO_TAG, Hello(inc))
            open_run(party, [SERVER], protocol=self.hfl, session=inc,
                     timeout_s=max(600.0, 0.1 * len(self.names)), wait_for_restart=False)
        except TesseraError as e:
            if not self.stopping:
                log.warning("virtual client %s could not connect: %s", name, e)

    def drop_client(self, name: str, why: str) -> None:
        """``name``'s actor died while it was in a SecAgg+ round: it leaves, and comes back
        (a new incarnation, as a restarted process) once the server polls for clients again.

        Not at once: SecAgg+ must see it gone for the rest of this round (a dropout), not
        wait for a hello from an incarnation that was never in the round."""
        sess = self.sessions.get(name)
        if sess is None or self.stopping:
            return
        sess.dead = True
        self.net.disconnect(name, why)
        with self._cache_lock:
            self.dropped.add(name)

    def reconnect_dropped(self) -> None:
        with self._cache_lock:
            names, self.dropped = sorted(self.dropped), set()
        for n in names:
            self.connector.submit(self.connect, n)

    # -- what the server sends ----------------------------------------------------------------
    def intercept(self, dst: str, tag: Tag, payload: bytes | bytearray) -> bool:
        """True when the message was taken over (a job, or relayed to an actor)."""
        sess = self.sessions.get(dst)
        if sess is None:
            return False
        if tag.protocol == self.hfl and tag.step == "ins":
            if sess.dead or tag.session != sess.incarnation:
                raise PartyUnavailable(dst, "its simulated process is gone (its Ray actor died)")
            self._instruction(sess, tag, payload)
            return True
        routed = self.route.get(dst)
        if routed is not None:
            routed[0].push(dst, routed[1], tag, payload)
            return True
        if tag.protocol == "run" and tag.session == sess.incarnation:
            return False  # the session handshake of a connecting client: the in-memory path
        log.debug("to %s, not running now: %s dropped", dst, tag)
        return True

    def _instruction(self, sess: _Session, tag: Tag, payload: bytes | bytearray) -> None:
        from hfl.messages import FitIns, Shutdown

        key = id(payload)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None or hit[0] is not payload:
                msg = decode(payload)
                ref = None if isinstance(msg, Shutdown) else self.ray.put(bytes(payload))
                secure = isinstance(msg, FitIns) and bool(msg.secagg_session)
                hit = (payload, type(msg).__name__, ref, secure)
                self._cache[key] = hit
                while len(self._cache) > 16:
                    self._cache.pop(next(iter(self._cache)))
        if hit[2] is None:
            return  # Shutdown: a virtual client has nothing to close
        self.jobs.put(_Job(sess.name, tag, hit[2], hit[3], time.monotonic() + self.timeout_s,
                           sess.incarnation))

    def nodes(self) -> list[str]:
        """The Ray node of each actor now (tests check clients ran on every node)."""
        return list(self.ray.get([lane.actor.node.remote() for lane in self.lanes], timeout=120))

    def stop(self) -> None:
        self.stopping = True
        for lane in self.lanes:
            with lane.lock:
                lane.lock.notify_all()
        self.connector.shutdown(wait=False, cancel_futures=True)
        for lane in self.lanes:
            with contextlib.suppress(Exception):
                self.ray.kill(lane.actor, no_restart=True)
        deadline = time.monotonic() + 5.0
        for lane in self.lanes:
            for t in lane.threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))


def simulate_on_ray(
    client_fn: Callable[..., Any],
    names: Sequence[str],
    *,
    server_cls: Callable[..., Any],
    context_cls: type,
    num_rounds: int,
    round_timeout: float | None,
    strategy: Any,
    secure_agg: bool | Mapping[str, Any],
    client_resources: Mapping[str, Any] | None,
    ray_init_args: Mapping[str, Any] | None,
    num_workers: int | None,
    seed: int,
    checkpoint_dir: str | Path | None,
    output_dir: str | Path | None,
    progress: bool,
    stop_condition: Callable[[Any], bool] | None,
    run_config: Mapping[str, Any] | None = None,
    ray_start_timeout_s: float = 180.0,
    on_start: Callable[[_Engine], None] | None = None,
) -> Any:
    """Run the simulation with each client's code in a Ray actor (see the module docstring).

    ``hfl.simulate(..., backend="ray")`` calls this; the arguments are its own, plus
    ``server_cls`` (:class:`hfl.Server`) and ``context_cls`` (what ``client_fn`` gets),
    passed in so this module imports neither. ``on_start(engine)`` is called once the
    actors exist (tests inspect the pool).
    """
    resources = check_client_resources(client_resources)
    ray = _ray()
    started = start_ray(ray_init_args, timeout_s=ray_start_timeout_s)
    engine: _Engine | None = None
    try:
        pool = pool_size(ray.cluster_resources(), resources, num_clients=len(names), cap=num_workers)
        timeout_s = 3600.0 if round_timeout is None else float(round_timeout)
        engine = _Engine(ray, client_fn, names, resources=resources, pool=pool,
                         timeout_s=timeout_s, run_config=dict(run_config or {}),
                         context_cls=context_cls)
        log.info("Ray backend: %d clients, %d actors (%s each)", len(names), pool, resources)
        engine.wait_ready(ray_start_timeout_s)
        if on_start is not None:
            on_start(engine)
        server_party = Party(SERVER, engine.server_transport, role=Role.SERVER)
        server = server_cls(server_party, strategy, clients=list(names), secure_agg=secure_agg,
                        checkpoint_dir=checkpoint_dir, output_dir=output_dir, seed=seed,
                        progress=progress, wait_for_clients_s=120.0 + 0.05 * len(names),
                        min_clients_at_start=len(names), stop_condition=stop_condition)
        engine.connect_all()
        history = server.fit(num_rounds, round_timeout)
        server.shutdown()
        return history
    finally:
        if engine is not None:
            engine.stop()
        if started:
            with contextlib.suppress(Exception):
                stop_ray()
