"""Ray backend of :func:`hfl.simulate`: virtual clients built on demand in a pool of Ray actors.

``hfl.simulate(client_fn, 10_000, backend="ray", client_resources={"num_cpus": 1},
ray_init_args={...})`` runs the same :class:`hfl.Server`, strategies and secure
aggregation as the in-process simulation and a gRPC deployment; only where the
clients' code runs differs. ``ray_init_args={"address": "auto"}`` (or
``"ray://head:10001"``) joins a running cluster instead of starting Ray here.

How it works
------------
*Driver* (the process calling ``simulate``): the server, over a :class:`party.Party`
whose transport is the in-memory one, wrapped (:class:`_ServerTransport`) so that an
instruction for a virtual client becomes a job for the actor pool instead of a message
for a client thread. A virtual client is a small record in the driver (its in-memory
transport and session id); it connects once, at the start, with the same ``Hello`` and
confirmed session handshake a gRPC client uses (``party.handshake.open_run``). No thread,
model or data per client lives in the driver.

*Actors*: as many as the cluster fits ``client_resources`` (Flower's rule: ``num_cpus``
/ ``num_gpus`` per client), each served by a driver thread (a *lane*) that takes the
next job from one shared queue. The actor builds the client there and then from
``client_fn(context)``, runs the instruction with :func:`hfl.client.handle` (the function
every tessera client runs) and returns the encoded reply, which the driver hands to the
server as that client's reply; the client object is then dropped. So 10,000 clients cost
memory only for those training at the moment, plus each one's ``context.state``.

*Per-client state*: ``context.state`` (a dict, Flower's ``Context.state``) travels to the
actor with each job and back with the reply; the driver keeps it for the client's next
job, whichever actor runs it.

*Data*: ``client_fn`` runs inside the actor, so a client's partition is loaded there
(from disk or from a dataset cached in the actor's process), never shipped from the
driver per client. ``client_fn`` itself (with its closure) is shipped once per actor:
keep data sets out of the closure.

*Secure aggregation* (``secure_agg=True``): the actor trains, checks the update as a
tessera client does, keeps Δ, and runs the client side of SecAgg+
(:func:`hfl.secure.client_round`: handshake, keys, shares, masked input, unmask shares)
in a thread of the same actor, over a Party whose transport (:class:`_Bridge`) relays
through the driver. The server's side, unmasking included, runs in the driver in the
unchanged :class:`hfl.Server` (``secure_agg.run_server``). Δ, the round's keys, the
self-mask seed and the shares never leave the actor: the driver relays only the
protocol's messages, which is exactly what a router sees in a deployment.

Trust
-----
Ray pickles what moves between the driver and its actors: ``client_fn`` (once per
actor), the job arguments (client name, ``context.state``), the replies (bytes) and the
relayed SecAgg messages (bytes). All of it is the simulating user's own code and data,
moving between processes of a Ray cluster that user started or joined: one trust domain,
one party. Nothing is unpickled from another party. The HFL and SecAgg messages inside
stay codec-encoded bytes (``party.codec``, no pickle), as over gRPC. A Ray cluster is not
a federation boundary: never join a cluster others can submit jobs to; a real federation
runs ``start_server`` / ``start_client`` over mutual TLS.

Faults
------
- An actor that dies mid-job (killed, crashed, its node lost) is that client's failure
  (a ``Failure`` reply naming the cause); the round goes on per the strategy's minimums,
  and a fresh actor takes the lane. Clients whose SecAgg+ step was in that actor are
  disconnected (dropouts for the server) and reconnect as new incarnations.
- A worker killed for running out of memory gives a message naming the client and the
  ``client_resources`` asked for.
- A job that outlives the round timeout: the server has dropped the client as a
  straggler; the lane kills the hung actor and starts a fresh one.
- Ray that cannot start (ray-project/ray#65983: the raylet waits 15 s for the dashboard
  agent, which a loaded machine can miss) is a :class:`TesseraError` after
  ``ray_start_timeout_s``, never a hang. The dashboard is off by default.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import math
import os
import queue
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from party import (
    ClosedTransport,
    ConfigError,
    InMemoryNetwork,
    Party,
    PartyTimeout,
    PartyUnavailable,
    Role,
    Tag,
    TesseraError,
)
from party.codec import decode, encode
from party.transport import Mailbox, TransportStats

log = logging.getLogger("hfl.ray")

#: the Ray release tessera[ray] pins (the one flwr[simulation]==1.42.0 uses)
RAY_VERSION = "2.55.1"
#: Flower's default: one CPU per client
DEFAULT_CLIENT_RESOURCES: dict[str, float] = {"num_cpus": 1.0, "num_gpus": 0.0}
_RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
SERVER = "server"
_GRACE_S = 2.0  # a job past its deadline by this much is hung
_POLL_S = 0.5  # the long poll for an actor's outgoing SecAgg messages
_CONNECT_THREADS = 128
_DEPTH = 2  # jobs queued at each actor: it starts the next client while the driver takes a reply


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - the ray extra is installed in CI
        raise ConfigError(
            f"backend='ray' needs Ray: pip install 'tessera[ray]' (ray=={RAY_VERSION})") from e
    return ray


# ---- starting Ray ---------------------------------------------------------------------------


def start_ray(ray_init_args: Mapping[str, Any] | None = None, *, timeout_s: float = 180.0) -> bool:
    """Start Ray here or join a cluster; True when this call initialised Ray (the caller shuts it down).

    A process already connected to Ray (``ray.init`` done by the caller, e.g. a test
    fixture) is reused as it is. Defaults added to ``ray_init_args``:
    ``include_dashboard=False``. ``address`` ("auto", "host:6379", "ray://host:10001")
    joins an existing cluster.

    Raises:
        TesseraError: Ray did not start or connect within ``timeout_s`` (named, with what to try).
    """
    ray = _ray()
    args = dict(ray_init_args or {})
    if ray.is_initialized():
        if args:
            log.info("Ray is already initialised in this process; ray_init_args %s not applied",
                     sorted(args))
        return False
    args.setdefault("include_dashboard", False)
    if not args.get("address") and not os.environ.get("RAY_ADDRESS"):
        # a new local instance, even when a cluster started with `ray start` runs on this machine
        # (ray.init() would join it, and refuse num_cpus)
        args["address"] = "local"
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # quiet Ray 2.55's FutureWarning
    where = (f"the Ray cluster at {args['address']!r}" if args["address"] != "local"
             else "a local Ray instance")
    out: dict[str, BaseException] = {}
    ready = threading.Event()

    def init() -> None:
        try:
            ray.init(**args)
        except BaseException as e:
            out["error"] = e
        ready.set()
        # Ray's own processes are started with PR_SET_PDEATHSIG, which Linux fires when the
        # *thread* that started them exits: this thread lives until Ray is shut down.
        _RAY_THREAD_EXIT.wait()

    _RAY_THREAD_EXIT.clear()
    th = threading.Thread(target=init, name="hfl-ray-init", daemon=True)
    th.start()
    ready.wait(timeout_s)
    hint = ("On a heavily loaded machine Ray 2.55 can fail to start (its raylet waits 15 s for "
            "the dashboard agent, ray-project/ray#65983): retry when the load is lower, or start "
            "the cluster once with `ray start --head --include-dashboard=false --num-cpus N` and "
            "pass ray_init_args={'address': 'auto'}.")
    if not ready.is_set():
        raise TesseraError(f"Ray did not start within {timeout_s:g} s ({where}). {hint}")
    if "error" in out:
        e = out["error"]
        raise TesseraError(f"Ray could not start ({where}): {type(e).__name__}: "
                           f"{_first_line(e)}. {hint}") from e
    return True


def stop_ray() -> None:
    """Shut down the Ray instance :func:`start_ray` started (and let its thread end)."""
    ray = _ray()
    try:
        ray.shutdown()
    finally:
        _RAY_THREAD_EXIT.set()


#: set once the Ray that start_ray() started has been shut down
_RAY_THREAD_EXIT = threading.Event()


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def check_client_resources(resources: Mapping[str, Any] | None) -> dict[str, float]:
    """Flower's ``client_resources``: ``num_cpus``, ``num_gpus`` (and ``memory`` in bytes)."""
    res = dict(DEFAULT_CLIENT_RESOURCES)
    for k, v in (resources or {}).items():
        if k not in _RESOURCE_KEYS:
            raise ConfigError(f"client_resources: unknown key {k!r}; known: {list(_RESOURCE_KEYS)}")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
            raise ConfigError(f"client_resources[{k!r}] must be a number >= 0, got {v!r}")
        res[k] = float(v)
    if res["num_cpus"] <= 0 and res["num_gpus"] <= 0:
        raise ConfigError("client_resources must ask for some num_cpus or num_gpus per client")
    return res


def pool_size(cluster: Mapping[str, float], resources: Mapping[str, float], *,
              num_clients: int, cap: int | None = None) -> int:
    """How many clients run at once: what the cluster fits of ``resources`` (at most ``cap``)."""
    fits: list[int] = []
    for key, total_key in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        need = float(resources.get(key, 0.0))
        if need > 0:
            fits.append(math.floor(float(cluster.get(total_key, 0.0)) / need + 1e-9))
    n = min(fits) if fits else 1
    if n < 1:
        have = {k: cluster.get(k, 0.0) for k in ("CPU", "GPU", "memory")}
        raise ConfigError(f"client_resources={dict(resources)} ask for more than the whole Ray "
                          f"cluster has ({have}): no client can run")
    return max(1, min(n, num_clients, cap if cap else n))


def describe_failure(e: BaseException, client: str, resources: Mapping[str, float]) -> str:
    """The failure reason the server records for a client whose Ray worker failed."""
    ray = _ray()
    text = str(e)
    low = text.lower()
    first = _first_line(e)
    if (isinstance(e, (ray.exceptions.OutOfMemoryError, MemoryError)) or "out of memory" in low
            or "memory pressure" in low or "(oom)" in low):
        return (f"client {client}: its Ray worker ran out of memory (client_resources="
                f"{dict(resources)}); ask for more per client, e.g. client_resources="
                f"{{'num_cpus': {resources.get('num_cpus', 1):g}, 'memory': <bytes>}}, so fewer "
                f"clients share a node, or make the client use less. Ray said: {first}")
    if isinstance(e, ray.exceptions.RayActorError):
        return f"client {client}: its Ray actor died mid-round ({type(e).__name__}: {first})"
    return f"client {client}: Ray failed to run it ({type(e).__name__}: {first})"


# ---- inside an actor ------------------------------------------------------------------------


class _Bridge:
    """Actor side of one virtual client's Party during its SecAgg+ steps: messages go out
    through the actor's outbox (the driver relays them to the server) and come in through
    a :class:`Mailbox` the driver fills."""

    def __init__(self, worker: _ClientWorker, name: str, server: str, server_inc: int,
                 incarnation: int, box: Mailbox) -> None:
        self._w = worker
        self._name = name
        self._server = server
        self._server_inc = server_inc
        self._inc = incarnation
        self._box = box
        self._stats = TransportStats()

    @property
    def name(self) -> str:
        return self._name

    @property
    def peers(self) -> list[str]:
        return [self._server]

    @property
    def stats(self) -> TransportStats:
        return self._stats

    @property
    def incarnation(self) -> int:
        return self._inc

    def peer_incarnation(self, name: str) -> int | None:
        return self._server_inc if name == self._server else None

    def wait_peer(self, name: str, *, timeout_s: float, other_than: int | None = None) -> int:
        if name != self._server or other_than == self._server_inc:
            raise PartyTimeout(name, "connect", timeout_s)
        return self._server_inc

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        if dst != self._server:
            raise PartyUnavailable(dst, "a simulated client talks to the server only")
        self._w.emit((self._name, "msg", dst, _tag_tuple(tag), bytes(payload)))
        self._stats.on_send(len(payload))

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        data = self._box.get(src, tag, timeout_s)
        self._stats.on_recv(len(data))
        return data

    def abort(self, session: str, reason: str) -> None:
        self._w.emit((self._name, "abort", session, reason, b""))

    def close(self) -> None:
        self._box.close("closed")


def _tag_tuple(tag: Tag) -> tuple[str, str, int, str]:
    return (tag.protocol, tag.session, tag.round, tag.step)


class _ClientWorker:
    """One Ray actor: builds virtual clients from ``client_fn`` and runs their jobs."""

    def __init__(self, client_fn: Callable[..., Any], num_clients: int,
                 run_config: dict[str, Any], server: str, resources: dict[str, float],
                 context_cls: type) -> None:
        params = list(inspect.signature(client_fn).parameters)
        self._context_cls = context_cls
        self._fn = client_fn
        self._wants_context = bool(params) and params[0] == "context"
        self._n = num_clients
        self._run_config = run_config
        self._server = server
        self._resources = resources
        self._cv = threading.Condition()
        self._out: list[tuple[Any, ...]] = []
        self._finished: list[int] = []
        self._boxes: dict[int, Mailbox] = {}  # by job token
        self._done: set[int] = set()
        self._ins: tuple[str, Any] | None = None  # (object id, decoded instruction)
        # job id -> True (started here) / False (revoked by the driver before it started)
        self._claims: collections.OrderedDict[int, bool] = collections.OrderedDict()

    # -- called by the driver ---------------------------------------------------------------
    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def revoke(self, job_id: int) -> bool:
        """Take back job ``job_id`` queued here: True when it has not started (and never
        will, here), False when it already has (its reply is the one that counts)."""
        return self._claim(job_id, started=False)

    def _claim(self, job_id: int, *, started: bool) -> bool:
        # run() (in "compute") and revoke() (in the default group) race for a job: the first wins
        with self._cv:
            if job_id in self._claims:
                return False
            self._claims[job_id] = started
            while len(self._claims) > 1024:
                self._claims.popitem(last=False)
            return True

    def run(self, job_id: int, name: str, node_id: int, state: dict[str, Any] | None,
            ins_box: list[Any], secure: dict[str, int] | None
            ) -> tuple[bytes | bytearray, dict[str, Any] | None, bool] | None:
        """Build client ``name``, run one instruction; (encoded reply, context.state, hosted),
        or None when the driver revoked the job before it started (its client never ran here).

        ``hosted`` is True when the client's SecAgg+ steps go on in this actor."""
        from hfl.client import flatten_update, handle
        from hfl.common import describe_mismatch
        from hfl.messages import Failure, FitIns, FitRes

        if not self._claim(job_id, started=True):
            return None
        ins = self._instruction(ins_box[0])
        ctx = self._context_cls(node_id, {"partition-id": node_id, "num-partitions": self._n},
                      dict(self._run_config), state=dict(state or {}))

        def make() -> Any:
            c = self._fn(ctx) if self._wants_context else self._fn(str(node_id))
            return c.to_client() if hasattr(c, "to_client") else c

        res = handle(make, ins)
        if isinstance(res, Failure) and res.message.startswith("MemoryError"):
            res = Failure(describe_failure(MemoryError(res.message), name, self._resources))
        if secure is None or not isinstance(ins, FitIns) or not ins.secagg_session:
            return encode(res), ctx.state, False
        # as hfl.client does: the server cannot inspect a masked update, the client checks its own
        if isinstance(res, FitRes):
            why = describe_mismatch(list(ins.parameters), list(res.parameters))
            if why is None and res.num_examples <= 0:
                why = f"num_examples is {res.num_examples}"
            if why is not None:
                res = Failure(f"fit result rejected before secure aggregation: {why}")
        if not isinstance(res, FitRes):
            return encode(res), ctx.state, False
        delta = flatten_update(list(res.parameters), list(ins.parameters))
        token = int(secure["token"])
        with self._cv:
            box = self._boxes.setdefault(token, Mailbox(name))
        bridge = _Bridge(self, name, self._server, int(secure["server_inc"]),
                         int(secure["client_inc"]), box)
        threading.Thread(target=self._secure_round, name=f"secagg-{name}", daemon=True,
                         args=(bridge, token, delta, res.num_examples, ins)).start()
        return encode(FitRes([], res.num_examples, res.metrics)), ctx.state, True

    def deliver(self, batch: list[tuple[str, int, tuple[str, str, int, str], bytes]]) -> int:
        """Messages from the server for clients whose SecAgg+ steps run here (by job token)."""
        n = 0
        with self._cv:
            for name, token, tag, data in batch:
                if token in self._done:
                    continue  # that job's round is over here
                self._boxes.setdefault(token, Mailbox(name)).put(
                    self._server, Tag(*tag), bytearray(data))
                n += 1
        return n

    def exchange(self, wait_s: float) -> tuple[list[tuple[Any, ...]], list[int]]:
        """Long poll: (messages to relay, clients whose SecAgg+ steps finished)."""
        with self._cv:
            if not self._out and not self._finished:
                self._cv.wait(wait_s)
            out, self._out = self._out, []
            fin, self._finished = self._finished, []
        return out, fin

    # -- inside -------------------------------------------------------------------------------
    def emit(self, rec: tuple[Any, ...]) -> None:
        with self._cv:
            self._out.append(rec)
            self._cv.notify_all()

    def _instruction(self, ref: Any) -> Any:
        import ray

        key = ref.hex() if hasattr(ref, "hex") else str(id(ref))
        cached = self._ins
        if cached is not None and cached[0] == key:
            return cached[1]
        msg = decode(ray.get(ref))
        self._ins = (key, msg)
        return msg

    def _secure_round(self, bridge: _Bridge, token: int, delta: Any, weight: int, ins: Any) -> None:
        from hfl.secure import client_round

        name = bridge.name
        party = Party(name, bridge, role=Role.CLIENT)
        try:
            client_round(party, self._server, delta, weight, session=ins.secagg_session,
                         params=dict(ins.secagg_params))
        except Exception as e:  # the server is gone, or a weight over max_weight: this round only
            log.warning("%s: secure aggregation %s ended: %s: %s", name, ins.secagg_session,
                        type(e).__name__, e)
        finally:
            with self._cv:
                self._boxes.pop(token, None)
                self._done.add(token)
                self._finished.append(token)
                self._cv.notify_all()


# ---- in the driver --------------------------------------------------------------------------


@dataclass
class _Session:
    """A virtual client as the driver knows it: its in-memory transport and session id."""

    name: str
    index: int
    transport: Any
    incarnation: str
    dead: bool = False


@dataclass
class _Job:
    client: str
    tag: Tag
    ref: Any
    secure: bool
    deadline: float
    incarnation: str


@dataclass
class _Running:
    job: _Job
    session: _Session
    ref: Any
    gen: int
    token: int
    actor: Any = None
    job_id: int = 0
    abandoned: bool = False  # revoked at its actor and handed to another lane
    started: bool = False  # its actor said it had started it: it stays


class _Fast:
    """An in-memory transport whose ``recv`` checks membership in a set.

    ``InMemoryTransport.recv`` checks the sender against a fresh list of every party's
    name, O(N) per receive: with 10,000 clients the server's poll of their hellos and the
    clients' handshakes became O(N²). Everything else is the wrapped transport's.
    """

    def __init__(self, inner: Any, members: frozenset[str]) -> None:
        self._inner = inner
        self._members = members
        self._peers = sorted(members - {inner.name})

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def peers(self) -> list[str]:
        return list(self._peers)

    @property
    def stats(self) -> TransportStats:
        return self._inner.stats  # type: ignore[no-any-return]

    @property
    def incarnation(self) -> int:
        return int(self._inner.incarnation)

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        self._inner.send(dst, tag, payload)

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        box = getattr(self._inner, "_box", None)
        if box is None or getattr(self._inner, "_closed", True):
            return self._inner.recv(src, tag, timeout_s=timeout_s)  # type: ignore[no-any-return]
        if src not in self._members:
            raise PartyUnavailable(src, "not a member of this federation")
        data: bytearray = box.get(src, tag, timeout_s)
        self._inner.stats.on_recv(len(data))
        return data


class _ServerTransport(_Fast):
    """The server's in-memory transport, with what it sends virtual clients diverted to Ray."""

    def __init__(self, inner: Any, engine: _Engine) -> None:
        super().__init__(inner, frozenset(engine.net.names))
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


class _Lane:
    """One actor of the pool and the driver threads that feed it."""

    def __init__(self, engine: _Engine, index: int) -> None:
        self.engine = engine
        self.index = index
        self.lock = threading.Condition()
        self.actor = engine.new_actor()
        self.gen = 0
        self.durations: collections.deque[float] = collections.deque(maxlen=20)
        self.routed: dict[int, str] = {}  # job token -> client
        self.inbound: list[tuple[str, int, tuple[str, str, int, str], bytes]] = []
        self.threads = [threading.Thread(target=f, name=f"hfl-ray-{what}-{index}", daemon=True)
                        for what, f in (("jobs", self._jobs), ("in", self._in), ("out", self._out))]
        for t in self.threads:
            t.start()

    # routing of the server's messages to clients whose SecAgg+ steps run in this actor;
    # a token names one job, so a late "finished" of a client's previous round unroutes nothing
    def route(self, c: str) -> int:
        with self.lock:
            token = self.engine.next_token()
            self.routed[token] = c
            self.engine.route[c] = (self, token)
            self.lock.notify_all()
            return token

    def unroute(self, token: int) -> None:
        with self.lock:
            c = self.routed.pop(token, None)
            if c is not None and self.engine.route.get(c) == (self, token):
                del self.engine.route[c]

    def push(self, c: str, token: int, tag: Tag, payload: bytes | bytearray) -> None:
        with self.lock:
            self.inbound.append((c, token, _tag_tuple(tag), bytes(payload)))
            self.lock.notify_all()

    def replace(self, gen: int, why: str, exc: BaseException | None = None) -> None:
        """The actor of generation ``gen`` is dead or hung: kill it, start a fresh one."""
        ray = self.engine.ray
        with self.lock:
            if gen != self.gen or self.engine.stopping:
                return
            old = self.actor
            self.gen += 1
            hosted = sorted(self.routed.values())
            for tok, c in self.routed.items():
                if self.engine.route.get(c) == (self, tok):
                    del self.engine.route[c]
            self.routed.clear()
            self.inbound.clear()
            self.actor = self.engine.new_actor()
            self.lock.notify_all()
        log.warning("Ray actor %d replaced: %s", self.index, why)
        with contextlib.suppress(Exception):
            ray.kill(old, no_restart=True)
        for c in hosted:
            # each client hosted there (SecAgg+ steps, or queued) leaves, named with the cause
            self.engine.drop_client(c, describe_failure(exc, c, self.engine.resources)
                                    if exc is not None else f"client {c}: {why}")

    def _jobs(self) -> None:
        """Keep up to ``_DEPTH`` jobs queued at the actor (it runs them one at a time), so it
        never waits for the driver between two clients; deliver replies in order."""
        eng = self.engine
        inflight: list[_Running] = []
        while not eng.stopping:
            while len(inflight) < _DEPTH and not (inflight and inflight[-1].job.secure):
                try:
                    job = eng.jobs.get(timeout=0 if inflight else _POLL_S)
                except queue.Empty:
                    break
                try:
                    r = self._submit(job)
                except Exception:  # never lose the lane
                    log.exception("client %s: could not submit its job", job.client)
                    continue
                if r is not None:
                    inflight.append(r)
            if not inflight:
                continue
            head = inflight.pop(0)
            if head.abandoned:
                continue  # another lane runs it; this copy's reply is ignored
            try:
                again = self._finish(head, inflight)
            except Exception:
                log.exception("client %s: job failed in the driver", head.job.client)
                again = False
            if again:  # it was only queued behind a job that killed or hung the actor
                with contextlib.suppress(Exception):
                    r = self._submit(head.job, token=head.token)
                    if r is not None:
                        inflight.insert(0, r)

    def _submit(self, job: _Job, token: int | None = None) -> _Running | None:
        eng = self.engine
        sess = eng.sessions.get(job.client)
        if sess is None or sess.dead or sess.incarnation != job.incarnation:
            return None  # that incarnation is gone; the server has been told
        if time.monotonic() > job.deadline:
            log.info("client %s: its job waited past the round timeout; not run", job.client)
            return None
        secure = None
        if job.secure:
            token = self.route(job.client) if token is None else token
            secure = {"server_inc": eng.server_inc, "client_inc": int(sess.transport.incarnation),
                      "token": token}
        with self.lock:
            actor, gen = self.actor, self.gen
        job_id = eng.next_token()
        ref = actor.run.options(concurrency_group="compute").remote(
            job_id, job.client, sess.index, eng.state.get(job.client), [job.ref], secure)
        return _Running(job, sess, ref, gen, -1 if token is None else token, actor, job_id)

    def _hand_over(self, q: _Running) -> None:
        """Give job ``q``, queued at this lane's actor behind a slow one, to another lane, if
        the actor can still revoke it: a client never runs twice (its code may have side
        effects, and the copy whose reply is ignored could be the one that fails)."""
        if q.abandoned or q.started or q.job.secure:
            return
        try:
            revoked = bool(self.engine.ray.get(q.actor.revoke.remote(q.job_id), timeout=2.0))
        except Exception:  # the actor is busy or gone: keep the job here for now
            return
        if revoked:
            log.info("client %s: queued behind a slow client in actor %d; another actor runs it",
                     q.job.client, self.index)
            q.abandoned = True
            self.engine.jobs.put(q.job)
        else:
            q.started = True

    def _finish(self, r: _Running, behind: list[_Running]) -> bool:
        """Wait for one job's reply and hand it to the server; True: submit it again.

        A job queued behind one that runs much longer than usual (perhaps hung) is revoked
        at the actor and handed back to the shared queue, so another lane runs it: a hung
        client never makes a straggler of the client after it."""
        eng, ray = self.engine, self.engine.ray
        from hfl.messages import Failure

        job = r.job
        hosted = False
        t0 = time.monotonic()
        usual = max(2.0, 4 * statistics.median(self.durations)) if self.durations else 5.0
        while not eng.stopping:
            left = job.deadline + _GRACE_S - time.monotonic()
            ready, _ = ray.wait([r.ref], timeout=max(0.0, min(0.5, left)))
            if ready or left <= 0:
                break
            if time.monotonic() - t0 > usual:
                for q in behind:
                    self._hand_over(q)
        try:
            out = ray.get(r.ref, timeout=0.0)
            if out is None:  # a revoke that timed out in the driver reached the actor after all
                return time.monotonic() < job.deadline  # so it never ran: run it again
            reply, state, hosted = out
            self.durations.append(time.monotonic() - t0)
        except ray.exceptions.GetTimeoutError:
            if r.gen != self.gen:  # queued behind the one that hung
                return not job.secure and time.monotonic() < job.deadline
            why = (f"client {job.client} did not finish within the round timeout of "
                   f"{eng.timeout_s:g} s (the server dropped it as a straggler)")
            self.replace(r.gen, why)
            return False
        except (ray.exceptions.RayError, MemoryError) as e:
            dead = isinstance(e, (ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError,
                                  ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError))
            if dead and r.gen != self.gen:
                return not job.secure  # queued behind the job that killed the actor
            why = describe_failure(e, job.client, eng.resources)
            log.error("%s", why)
            if dead:
                self.replace(r.gen, why, e)
            reply, state = encode(Failure(why)), None
        finally:
            if not hosted:
                self.unroute(r.token)
        if state or job.client in eng.state:
            eng.state[job.client] = dict(state or {})
        with contextlib.suppress(PartyUnavailable, ClosedTransport):
            r.session.transport.send(SERVER, job.tag.at("res"), reply)
        return False

    def _in(self) -> None:
        """Deliver the server's messages to the actor, in order."""
        eng, ray = self.engine, self.engine.ray
        while not eng.stopping:
            with self.lock:
                while not self.inbound and not eng.stopping:
                    self.lock.wait(_POLL_S)
                batch, self.inbound = self.inbound, []
                actor, gen = self.actor, self.gen
            if not batch:
                continue
            try:
                ray.get(actor.deliver.remote(batch), timeout=120.0)
            except Exception as e:
                self.replace(gen, f"its Ray actor failed to take messages: {_first_line(e)}", e)

    def _out(self) -> None:
        """Relay what the clients hosted in the actor send the server."""
        eng, ray = self.engine, self.engine.ray
        while not eng.stopping:
            with self.lock:
                while not self.routed and not eng.stopping:
                    self.lock.wait(_POLL_S)
                actor, gen = self.actor, self.gen
            if eng.stopping:
                return
            try:
                out, finished = ray.get(actor.exchange.remote(_POLL_S), timeout=_POLL_S + 120.0)
            except Exception as e:
                self.replace(gen, f"its Ray actor failed during secure aggregation: "
                                  f"{type(e).__name__}: {_first_line(e)}", e)
                continue
            for c, kind, a, b, data in out:
                sess = eng.sessions.get(c)
                if sess is None or sess.dead:
                    continue
                with contextlib.suppress(PartyUnavailable, ClosedTransport):
                    if kind == "msg":
                        sess.transport.send(a, Tag(*b), data)
                    else:
                        sess.transport.abort(a, b)
            for token in finished:
                self.unroute(token)


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
        self.members = frozenset(self.net.names)
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
        party = Party(name, _Fast(t, self.members), role=Role.CLIENT)
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


__all__ = [
    "DEFAULT_CLIENT_RESOURCES",
    "RAY_VERSION",
    "check_client_resources",
    "describe_failure",
    "pool_size",
    "simulate_on_ray",
    "start_ray",
]
