"""A frozen peer for tests: :func:`sigstop` SIGSTOPs a process and SIGCONTs it later.

The fault "the peer process is frozen" keeps the peer's TCP connections open (the
kernel still acknowledges bytes) while nothing reads or answers them, which a
network fault cannot produce. :class:`Stopped` always continues the process on
exit, even when its timer has not fired yet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from types import TracebackType

__all__ = ["Stopped", "sigstop"]


def _proc_state(pid: int) -> str | None:
    """The state letter in /proc/<pid>/stat ('T' = stopped), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


class Stopped:
    """A process stopped by :func:`sigstop`; :meth:`resume` (or leaving ``with``) continues it."""

    def __init__(self, pid: int, seconds: float | None) -> None:
        self.pid = pid
        self._lock = threading.Lock()
        self._resumed = False
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 1.0
        while _proc_state(pid) not in ("T", "t", None, "Z", "X") and time.monotonic() < deadline:
            time.sleep(0.005)  # SIGSTOP is asynchronous: return once the kernel says stopped
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.resume)
            self._timer.daemon = True
            self._timer.start()

    @property
    def resumed(self) -> bool:
        return self._resumed

    def resume(self) -> None:
        """SIGCONT the process (once; a process that has gone is ignored)."""
        with self._lock:
            if self._resumed:
                return
            self._resumed = True
        if self._timer is not None and threading.current_thread() is not self._timer:
            self._timer.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)

    def __enter__(self) -> Stopped:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.resume()


def sigstop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | int,
            seconds: float | None) -> Stopped:
    """Freeze a process (SIGSTOP) and continue it (SIGCONT) after ``seconds``, in a daemon timer.

    ``proc`` is a :class:`subprocess.Popen` or a pid. Returns once the process is
    stopped (on Linux, as /proc reports it). Use it as a function (resumes by
    itself) or as a context manager, which always resumes the process on exit
    even if the timer has not fired yet; ``seconds=None`` waits for that exit
    (or :meth:`Stopped.resume`).
    """
    pid = proc if isinstance(proc, int) else proc.pid
    return Stopped(pid, seconds)
