"""Inside a Ray actor: build virtual clients from ``client_fn`` and run their jobs
(and their SecAgg+ steps, over a Party that relays through the driver)."""

from __future__ import annotations

import collections
import inspect
import threading
from collections.abc import Callable
from typing import Any

from hfl.ray.cluster import describe_failure, log
from party import Party, PartyTimeout, PartyUnavailable, Role, Tag
from party.codec import decode
from party.transport import Mailbox, TransportBase


class _Bridge(TransportBase):
    """Actor side of one virtual client's Party during its SecAgg+ steps: messages go out
    through the actor's outbox (the driver relays them to the server) and come in through
    a :class:`Mailbox` the driver fills."""

    def __init__(self, worker: _ClientWorker, name: str, server: str, server_inc: int,
                 incarnation: int, box: Mailbox) -> None:
        super().__init__(name, box, incarnation)
        self._w = worker
        self._server = server
        self._server_inc = server_inc

    @property
    def peers(self) -> list[str]:
        return [self._server]

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
        return self._take(src, tag, timeout_s)

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
            ) -> tuple[Any, dict[str, Any] | None, bool] | None:
        """Build client ``name``, run one instruction; (reply, context.state, hosted), or
        None when the driver revoked the job before it started (its client never ran here).

        The reply is the message object (``FitRes``, ``Failure``, ...), not its encoding: Ray
        moves its arrays out of band (no copy into a pickle stream; inline, not through the
        object store, up to ``max_direct_call_object_size``) and the driver encodes it once
        for the server, which decodes and checks it as any client's reply.

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
            return res, ctx.state, False
        # as hfl.client does: the server cannot inspect a masked update, the client checks its own
        if isinstance(res, FitRes):
            why = describe_mismatch(list(ins.parameters), list(res.parameters))
            if why is None and res.num_examples <= 0:
                why = f"num_examples is {res.num_examples}"
            if why is not None:
                res = Failure(f"fit result rejected before secure aggregation: {why}")
        if not isinstance(res, FitRes):
            return res, ctx.state, False
        delta = flatten_update(list(res.parameters), list(ins.parameters))
        token = int(secure["token"])
        with self._cv:
            box = self._boxes.setdefault(token, Mailbox(name))
        bridge = _Bridge(self, name, self._server, int(secure["server_inc"]),
                         int(secure["client_inc"]), box)
        threading.Thread(target=self._secure_round, name=f"secagg-{name}", daemon=True,
                         args=(bridge, token, delta, res.num_examples, ins)).start()
        return FitRes([], res.num_examples, res.metrics), ctx.state, True

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
