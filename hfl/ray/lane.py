"""One actor of the pool and the driver threads that feed it jobs, relay its clients'
SecAgg+ messages, and replace it when it dies or hangs."""

from __future__ import annotations

import collections
import contextlib
import queue
import statistics
import threading
import time
from typing import Any, Protocol

from hfl.ray.cluster import _DEPTH, _GRACE_S, _POLL_S, SERVER, _first_line, describe_failure, log
from hfl.ray.sessions import _Job, _Running, _Session
from hfl.ray.worker import _tag_tuple
from party import ClosedTransport, PartyUnavailable, Tag
from party.codec import encode


class _Engine(Protocol):
    """What a lane uses of the driver (hfl.ray.engine._Engine); a protocol, so the
    lane does not import the engine that builds it."""

    ray: Any
    resources: dict[str, float]
    timeout_s: float
    stopping: bool
    server_inc: int
    sessions: dict[str, _Session]
    state: dict[str, dict[str, Any]]
    route: dict[str, tuple[_Lane, int]]
    jobs: queue.Queue[_Job]

    def next_token(self) -> int: ...
    def new_actor(self) -> Any: ...
    def drop_client(self, name: str, why: str) -> None: ...


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
            reply, state = Failure(why), None
        finally:
            if not hosted:
                self.unroute(r.token)
        if state or job.client in eng.state:
            eng.state[job.client] = dict(state or {})
        with contextlib.suppress(PartyUnavailable, ClosedTransport):
            r.session.transport.send(SERVER, job.tag.at("res"), encode(reply))
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
