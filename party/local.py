"""A whole federation on one machine, as separate processes: for demos, launchers and tests.

:class:`LocalFederation` does what every ``examples/*/run_local.py`` needs:

1. makes a CA and mTLS certificates for the parties (``party.certs``) and writes a
   federation file with a router on a free port of 127.0.0.1 (``party.config``);
2. starts the router (``python -m party.router``), or lets a party host it, and
   waits until its port accepts connections (never a fixed sleep);
3. starts each party as ``python -m module ...`` in a process group of its own,
   with its output in ``logs/<name>.log`` and echoed as ``[name] line``;
4. waits for the processes; the *first* failure (a non-zero exit code, the router
   exiting, the time limit) stops every process and raises :class:`LaunchError`
   naming the process, its exit code, its last output line and its log;
5. on leaving the ``with`` block (normally, on an error, on Ctrl-C or SIGTERM)
   stops whatever still runs: SIGTERM to each process group, SIGKILL after 10 s.

::

    with LocalFederation({"bank": "active", "fintech": "passive"}, out="demo") as fed:
        procs = [fed.start(n, "examples.transport_demo.party_main", "--config", fed.config,
                           "--party", n) for n in ("fintech", "bank")]
        fed.wait(procs, timeout_s=120)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from party.errors import TesseraError

Echo = Callable[[str, str], None]
_ECHO_LOCK = threading.Lock()  # one pump thread per child: whole lines, never interleaved


class LaunchError(TesseraError, RuntimeError):
    """A process of a local federation failed, or did not finish or listen in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any] | None = None, timeout_s: float = 30.0,
              *, name: str = "the router") -> None:
    """Wait until something listens on 127.0.0.1:``port`` (e.g. a router started as ``proc``).

    Raises:
        LaunchError: ``proc`` exited first, or nothing listened within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LaunchError(f"{name} exited with code {proc.returncode} before it listened "
                              f"on port {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise LaunchError(f"nothing listened on port {port} within {timeout_s:g} s")


def echo_line(name: str, line: str) -> None:
    """Default echo: ``[name] line`` on stdout (lines that already start with ``[`` or a
    space as they are); the router's INFO/DEBUG lines stay in its log only."""
    if name == "router" and (" INFO " in line or " DEBUG " in line):
        return
    if not line.strip():
        return
    with _ECHO_LOCK:
        sys.stdout.write((line if line.startswith(("[", " ")) else f"[{name}] {line}") + "\n")
        sys.stdout.flush()


class Child:
    """One process of the federation: its name, ``Popen``, log file and last output line."""

    def __init__(self, name: str, proc: subprocess.Popen[str], log: Path, *,
                 daemon: bool) -> None:
        self.name, self.proc, self.log, self.daemon = name, proc, log, daemon
        self.last_line = ""
        self.pump: threading.Thread | None = None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.proc.pid}, rc={self.proc.returncode})"


class LocalFederation:
    """Certificates, a federation file, a router and party processes on 127.0.0.1.

    Args:
        parties: party name -> role (as in the federation file).
        name: the federation's name.
        out: working directory (certificates, ``fed.toml``, ``logs/``); default a new
            temporary directory, kept (its path is :attr:`work`).
        router: start ``python -m party.router``; False when a party hosts the router
            (an HFL server): start that party with ``listens=True``.
        timeout_s: the federation file's ``timeout_s`` (per-message deadline).
        echo: called with (process name, line) for each output line; None: log only.
        cwd: the processes' working directory (default: this process's).
        env: extra environment variables for every process.
    """

    def __init__(self, parties: Mapping[str, str], *, name: str = "local",
                 out: str | Path | None = None, router: bool = True,
                 timeout_s: float | None = None, echo: Echo | None = echo_line,
                 cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                 config_name: str = "fed.toml") -> None:
        if not parties:
            raise LaunchError("a local federation needs at least one party")
        self.parties = dict(parties)
        self.name = name
        self.work = Path(out if out is not None else tempfile.mkdtemp(prefix=f"tessera-{name}-"))
        self.work = self.work.resolve()
        self.with_router = router
        self.timeout_s = timeout_s
        self.echo = echo
        self.cwd = Path(cwd) if cwd is not None else None
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.config = self.work / config_name
        self.certs = self.work / "certs"
        self.logs = self.work / "logs"
        self.port = 0
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._old_sigterm: Any = None

    # -- set-up ----------------------------------------------------------------------------
    def open(self) -> LocalFederation:
        """Write certificates and the federation file; start the router and wait for it."""
        from party.certs import init_certs
        from party.config import write_federation

        self.work.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for old in self.logs.glob("*.log"):  # a rerun in the same directory starts fresh
            old.unlink()
        init_certs(self.certs, list(self.parties), overwrite=True)
        self.port = free_port()
        write_federation(self.config, name=self.name, router=f"127.0.0.1:{self.port}",
                         parties=self.parties, cert_dir="certs", timeout_s=self.timeout_s)
        if self.with_router:
            self.start("router", "party.router", "--config", self.config, listens=True,
                       daemon=True)
        return self

    def __enter__(self) -> LocalFederation:
        if threading.current_thread() is threading.main_thread():
            # a launcher killed with SIGTERM (a test's timeout, systemd) stops its children too
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        try:
            return self.open()
        except BaseException:
            self._restore()
            self.stop()
            raise

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            self._restore()

    def _restore(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # -- processes -------------------------------------------------------------------------
    def start(self, name: str, module: str, *args: str | Path | int | float,
              listens: bool = False, daemon: bool = False,
              listen_timeout_s: float = 60.0) -> Child:
        """Start ``python -m module *args`` as process ``name``.

        ``listens=True``: wait until the router port accepts connections (the router,
        or a party hosting it). ``daemon=True``: the process must run until the end;
        its exit, even with code 0, is a failure.
        """
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *map(str, args)], cwd=self.cwd, env=self.env,
            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(name, proc, log, daemon=daemon)
        child.pump = threading.Thread(target=self._pump, args=(child, proc.stdout),
                                      name=f"pump-{name}", daemon=True)
        child.pump.start()
        with self._lock:
            self.children.append(child)
        if listens:
            try:
                wait_port(self.port, proc, listen_timeout_s, name=name)
            except LaunchError as e:
                self.stop()
                raise LaunchError(f"{e}; see {log}") from None
        return child

    def _pump(self, child: Child, stream: IO[str] | None) -> None:
        assert stream is not None
        with open(child.log, "a") as f:
            for line in stream:
                f.write(line)
                f.flush()
                line = line.rstrip("\n")
                if line.strip():
                    child.last_line = line
                if self.echo is not None:
                    self.echo(child.name, line)

    def wait(self, procs: Iterable[Child] | None = None, *, timeout_s: float) -> None:
        """Wait until every one of ``procs`` (default: every non-daemon child) exits with 0.

        Raises:
            LaunchError: the first process that exits non-zero, a daemon (the router)
                that exits at all, or the time limit; every process is stopped first.
        """
        waited = list(procs) if procs is not None else [c for c in self.children if not c.daemon]
        deadline = time.monotonic() + timeout_s
        pending = list(waited)
        while pending:
            with self._lock:
                watched = list(self.children)
            for c in watched:
                rc = c.returncode
                if rc is None:
                    continue
                if c in pending:
                    pending.remove(c)
                if rc != 0 or c.daemon:
                    self._fail(c, rc)
            if pending and time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"{', '.join(c.name for c in pending)} did not finish within "
                                  f"{timeout_s:g} s; logs in {self.logs}")
            time.sleep(0.05)
        for c in waited:
            if c.pump is not None:
                c.pump.join(timeout=5)

    def _fail(self, c: Child, rc: int) -> None:
        if c.pump is not None:
            c.pump.join(timeout=5)  # its last words are in the log before we say so
        self.stop()
        what = (f"exited with code {rc}" if rc >= 0 else f"was killed by signal {-rc}")
        if c.daemon and rc == 0:
            what = "exited while the federation was running"
        last = f": {c.last_line.strip()}" if c.last_line.strip() else ""
        raise LaunchError(f"{c.name} {what}{last} (log: {c.log})")

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop every process still running: SIGTERM to its group, SIGKILL after ``grace_s``."""
        with self._lock:
            children = list(self.children)
        for c in children:
            if c.proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c in children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait(timeout=5)
        for c in children:
            if c.pump is not None:
                c.pump.join(timeout=5)
            if c.proc.stdout is not None:
                c.proc.stdout.close()

    def running(self) -> list[str]:
        """Names of the processes still running."""
        with self._lock:
            return [c.name for c in self.children if c.proc.poll() is None]


def run_hfl(server: str, server_module: str, clients: Sequence[str], client_module: str, *,
            name: str, out: str | Path | None, server_args: Sequence[str | Path | int | float] = (),
            client_args: Sequence[str | Path | int | float] = (), timeout_s: float = 1800) -> Path:
    """An HFL federation on 127.0.0.1 whose server hosts the router; returns its ``out/``.

    Writes ``federation.toml`` (``server`` = server, ``clients`` = clients) in ``out``, starts
    ``python -m server_module --config F *server_args --out <work>/out`` and waits until it
    listens, then ``python -m client_module --config F --party <client> *client_args`` for
    each client, and waits ``timeout_s`` for all of them (:meth:`LocalFederation.wait`).
    """
    with LocalFederation({server: "server", **dict.fromkeys(clients, "client")}, name=name,
                         out=out, router=False, config_name="federation.toml") as fed:
        results = fed.work / "out"
        procs = [fed.start(server, server_module, "--config", fed.config, *server_args,
                           "--out", results, listens=True)]
        procs += [fed.start(c, client_module, "--config", fed.config, "--party", c, *client_args)
                  for c in clients]
        fed.wait(procs, timeout_s=timeout_s)
    return results


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


__all__ = ["Child", "LaunchError", "LocalFederation", "echo_line", "free_port", "run_hfl", "wait_port"]
