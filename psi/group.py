"""Batched ristretto255 group operations over worker processes, and the primitives.

The primitives (RFC 9380 hash to group, masking, point checks and what each
refuses) are in :mod:`psi.ristretto` and re-exported here under their usual
names. :class:`GroupEngine` spreads a batch over worker processes, one per core
(plain bytes over pipes, in the frame format of :mod:`psi._worker`); small batches
run inline.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from psi._worker import pack_msgs, read_response, write_request
from psi.ristretto import *  # noqa: F403  (the primitives, under their usual names)
from psi.ristretto import POINT_BYTES, InvalidPoint, hash_to_group, mask
from psi.ristretto import __all__ as _primitives

# -- worker processes ---------------------------------------------------------------------------


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Worker:
    """One ``python -m psi._worker`` child speaking framed bytes over its stdin/stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "psi._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )

    def submit(self, op: bytes, a: bytes, start: int, b: bytes) -> None:
        assert self.proc.stdin is not None
        write_request(self.proc.stdin, op, a, start, b)

    def result(self) -> bytes:
        assert self.proc.stdout is not None
        return read_response(self.proc.stdout)

    def peak_rss_mb(self) -> float:
        """The worker's peak resident set (Linux ``VmHWM``), 0 if unknown."""
        from party.files import peak_rss_mb  # here: the worker pool's importers need no party

        return peak_rss_mb(self.proc.pid)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class GroupEngine:
    """Batched group operations, inline or over worker processes (all cores by default).

    ``workers=0`` (or 1) runs everything in this thread. Batches smaller than
    ``min_parallel`` points also run inline, so small runs pay no start-up.
    Workers are plain ``python -m psi._worker`` children fed bytes over pipes:
    no pickling, no fork of a process that runs gRPC threads, no re-import of
    ``__main__``. They start on the first large batch and stop on :meth:`close`.
    Not thread-safe: one engine per party.
    """

    def __init__(self, workers: int | None = None, *, min_parallel: int = 4096) -> None:
        self.workers = default_workers() if workers is None else max(0, workers)
        self.min_parallel = min_parallel
        self._procs: list[_Worker] = []
        self.ops = 0  # group operations done (hashes + multiplications)
        self.worker_peak_rss_mb = 0.0  # largest worker's peak RSS, known after close()

    def _pool(self) -> list[_Worker]:
        if self.workers > 1 and not self._procs:
            self._procs = [_Worker() for _ in range(self.workers)]
        return self._procs

    def _parts(self, n: int) -> list[tuple[int, int]]:
        # several parts per worker, handed out as workers free up: no worker idles at the
        # end of a batch because another one got a slower share of a busy machine
        k = max(1, min(len(self._procs) * 4, n // max(1, self.min_parallel // 2)))
        step = -(-n // k)
        return [(a, min(n, a + step)) for a in range(0, n, step)]

    def _run(self, op: bytes, a: bytes, jobs: list[tuple[int, bytes]]) -> bytes:
        results: list[bytes | None] = [None] * len(jobs)
        busy: dict[int, tuple[_Worker, int]] = {}  # stdout fd -> (worker, job index)
        todo = list(range(len(jobs)))[::-1]
        first_error: BaseException | None = None
        try:
            for w in self._procs:
                if todo:
                    k = todo.pop()
                    w.submit(op, a, *jobs[k])
                    assert w.proc.stdout is not None
                    busy[w.proc.stdout.fileno()] = (w, k)
            while busy:
                ready, _, _ = select.select(list(busy), [], [])
                for fd in ready:
                    w, k = busy.pop(fd)
                    try:
                        results[k] = w.result()
                    except InvalidPoint as e:  # keep draining: the pipes stay in step
                        first_error = first_error or e
                        todo.clear()
                    if todo:
                        k = todo.pop()
                        w.submit(op, a, *jobs[k])
                        busy[fd] = (w, k)
        except (OSError, RuntimeError):
            self.close()
            raise
        if first_error is not None:
            raise first_error
        return b"".join(r for r in results if r is not None)

    def mask(self, points: bytes, scalar: bytes) -> bytes:
        """Each point raised to ``scalar`` (see :func:`mask`)."""
        n = len(points) // POINT_BYTES
        self.ops += n
        if n < self.min_parallel or not self._pool():
            return mask(points, scalar)
        jobs = [(a, points[a * POINT_BYTES : b * POINT_BYTES]) for a, b in self._parts(n)]
        return self._run(b"M", scalar, jobs)

    def hash_to_group(self, msgs: Sequence[bytes], dst: bytes) -> bytes:
        """:func:`hash_to_group` of every message, packed."""
        n = len(msgs)
        self.ops += n
        if n < self.min_parallel or not self._pool():
            return hash_to_group(msgs, dst)
        jobs = [(a, pack_msgs(list(msgs[a:b]))) for a, b in self._parts(n)]
        return self._run(b"H", dst, jobs)

    def close(self) -> None:
        """Stop the worker processes."""
        procs, self._procs = self._procs, []
        for w in procs:
            self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, w.peak_rss_mb())
            w.close()

    def __enter__(self) -> GroupEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [*_primitives, "GroupEngine", "default_workers"]
