"""ristretto255 on packed 32-byte points: RFC 9380 hash to group, masking, batched over cores.

Points travel as one ``bytes`` blob of ``32 * n`` bytes, never as per-item
Python objects. libsodium (the copy bundled by ``rbcl``) does the group
arithmetic; we call it through ctypes directly, one call per point, with no
per-call allocation.

* :func:`hash_to_group` is ``hash_to_ristretto255`` of RFC 9380 (suite
  ``ristretto255_XMD:SHA-512_R255MAP_RO_``): ``expand_message_xmd`` with
  SHA-512 to 64 uniform bytes, then the RFC 9496 one-way map (libsodium's
  ``crypto_core_ristretto255_from_hash``). It is *not* ``g^H(x)``, whose
  discrete logs would be known (threats.md row 19).
* :func:`mask` raises every point to a secret scalar. libsodium decodes each
  point (``ristretto255_frombytes``, which refuses every non-canonical
  encoding) *before* the multiplication and refuses an identity result; we also
  refuse the identity encoding up front. Any refusal raises
  :class:`InvalidPoint` with the point's index (threats.md row 18). ristretto255
  has prime order, so there are no low-order points to reject beyond these.
* :class:`GroupEngine` spreads a batch over worker processes, one per core
  (plain bytes over pipes); small batches run inline.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import select
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import rbcl
from rbcl import rbcl as _rbcl_impl

POINT_BYTES = 32
SCALAR_BYTES = 32
IDENTITY = bytes(POINT_BYTES)
#: RFC 9380 suite ID our DSTs are built on.
SUITE = b"ristretto255_XMD:SHA-512_R255MAP_RO_"

_lib = _rbcl_impl._sodium  # the ctypes CDLL rbcl loaded (libsodium)
_scalarmult = _lib.crypto_scalarmult_ristretto255
_from_hash = _lib.crypto_core_ristretto255_from_hash
_is_valid = _lib.crypto_core_ristretto255_is_valid_point


class InvalidPoint(ValueError):
    """A received value is not a canonical, non-identity ristretto255 encoding."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"point {index}: {reason}")
        self.index = index
        self.reason = reason


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 ``expand_message_xmd`` with SHA-512."""
    if len(dst) > 255:
        raise ValueError("DST longer than 255 bytes")
    ell = -(-len_in_bytes // 64)
    if ell > 255 or len_in_bytes > 65535:
        raise ValueError(f"len_in_bytes {len_in_bytes} too large")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(
        bytes(128) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    out = b = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    for i in range(2, ell + 1):
        b = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, b, strict=True)) + bytes([i]) + dst_prime).digest()
        out += b
    return out[:len_in_bytes]


def from_uniform(h: bytes) -> bytes:
    """RFC 9496 §4.3.4 element derivation from 64 uniform bytes."""
    if len(h) != 64:
        raise ValueError("need 64 bytes")
    return bytes(rbcl.crypto_core_ristretto255_from_hash(h))


def hash_to_group(msgs: Sequence[bytes], dst: bytes) -> bytes:
    """``hash_to_ristretto255(msg, dst)`` for each message, packed.

    Equivalent to ``from_uniform(expand_message_xmd(msg, dst, 64))``; the fixed
    prefix of the first hash is absorbed once per batch.
    """
    if len(dst) > 255:
        raise ValueError("DST longer than 255 bytes")
    dst_prime = dst + bytes([len(dst)])
    tail0 = b"\x00\x40\x00" + dst_prime  # I2OSP(64, 2) || I2OSP(0, 1) || DST'
    tail1 = b"\x01" + dst_prime
    pre = hashlib.sha512(bytes(128))
    sha512 = hashlib.sha512
    n = len(msgs)
    out = ctypes.create_string_buffer(POINT_BYTES * n) if n else None
    for i, m in enumerate(msgs):
        h = pre.copy()
        h.update(m)
        h.update(tail0)
        u = sha512(h.digest() + tail1).digest()
        _from_hash(ctypes.byref(out, POINT_BYTES * i), u)  # type: ignore[arg-type]
    blob = out.raw if out is not None else b""
    # from_hash gives the identity only for a 2^-250-probability input; refuse it anyway.
    if n and IDENTITY in _points(blob):
        raise ValueError("hash to group gave the identity element")
    return blob


def _points(blob: bytes) -> set[bytes]:
    return {blob[i : i + POINT_BYTES] for i in range(0, len(blob), POINT_BYTES)}


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar mod the group order."""
    while True:
        s = bytes(rbcl.crypto_core_ristretto255_scalar_random())
        if s != bytes(SCALAR_BYTES):
            return s


def mask(points: bytes, scalar: bytes, *, start_index: int = 0) -> bytes:
    """Each point raised to ``scalar``; :class:`InvalidPoint` on a bad or identity point."""
    if len(points) % POINT_BYTES:
        raise InvalidPoint(start_index + len(points) // POINT_BYTES, "truncated point")
    if len(scalar) != SCALAR_BYTES:
        raise ValueError("scalar must be 32 bytes")
    n = len(points) // POINT_BYTES
    if n == 0:
        return b""
    out = ctypes.create_string_buffer(POINT_BYTES * n)
    mv = memoryview(points)
    for i in range(n):
        p = bytes(mv[POINT_BYTES * i : POINT_BYTES * (i + 1)])
        if p == IDENTITY:
            raise InvalidPoint(start_index + i, "identity element")
        if _scalarmult(ctypes.byref(out, POINT_BYTES * i), scalar, p) != 0:
            reason = "not a canonical ristretto255 encoding" if not _is_valid(p) else "identity result"
            raise InvalidPoint(start_index + i, reason)
    return out.raw


def is_valid_point(p: bytes) -> bool:
    """Canonical encoding of a non-identity element."""
    return len(p) == POINT_BYTES and p != IDENTITY and bool(_is_valid(p))


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
        self.proc.stdin.write(struct.pack("<cI", op, len(a)) + a + struct.pack("<QQ", start, len(b)))
        self.proc.stdin.write(b)
        self.proc.stdin.flush()

    def result(self) -> bytes:
        assert self.proc.stdout is not None
        head = _read_exact(self.proc.stdout, 9)
        status, n = head[0], struct.unpack("<Q", head[1:])[0]
        payload = _read_exact(self.proc.stdout, n)
        if status == 0:
            return payload
        if status == 1:
            raise InvalidPoint(struct.unpack("<Q", payload[:8])[0], payload[8:].decode())
        raise RuntimeError(f"group worker failed: {payload.decode(errors='replace')}")

    def peak_rss_mb(self) -> float:
        """The worker's peak resident set (Linux ``VmHWM``), 0 if unknown."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

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


def _read_exact(f: IO[bytes], n: int) -> bytes:
    parts = []
    while n:
        b = f.read(n)
        if not b:
            raise RuntimeError("group worker exited unexpectedly")
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


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
        from psi._worker import pack_msgs

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


__all__ = [
    "IDENTITY",
    "POINT_BYTES",
    "SUITE",
    "GroupEngine",
    "InvalidPoint",
    "default_workers",
    "expand_message_xmd",
    "from_uniform",
    "hash_to_group",
    "is_valid_point",
    "mask",
    "random_scalar",
]
