"""One party's side of one spu PSI run (RR22 / KKRT), in a process of its own.

``python -m psi._spu_worker`` reads a JSON job (one line) on stdin, opens spu's brpc link with
mutual TLS, runs ``spu.libpsi.psi_execute`` on the job's CSV of hashed keys and writes
a JSON report (counts, seconds, peak RSS) to the job's ``report`` path (atomically),
then waits for its stdin to close and exits. Errors: exit code 3 and a report
``{"error": ...}``. spu's own log goes to stdout/stderr (the
parent sends both to a file).

Only the standard library and spu's two extension modules are loaded: not tessera,
not pandas, and not spu's jax frontend (``spu/__init__`` imports jax for its compiler,
2 s of start-up that PSI does not need, and pins numpy < 2). :func:`load_spu` is
shared with :mod:`psi.spu`, which calls it in the parent to check availability.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

SPU_VERSION = "0.9.5"


class SpuMissing(Exception):
    """spu cannot be loaded here (other Python, not installed, other version)."""


def spu_problem(version: tuple[int, int] | None = None) -> str | None:
    """Why spu's PSI library cannot be used in this interpreter (None: it can).

    ``version`` stands in for this interpreter's (major, minor) (for tests)."""
    ver = version or (sys.version_info[0], sys.version_info[1])
    shown = platform.python_version() if version is None else f"{ver[0]}.{ver[1]}"
    here = f"Python {shown} ({platform.python_implementation()}, {platform.machine()})"
    if (ver != (3, 11) or platform.python_implementation() != "CPython"
            or sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64")):
        return (f"needs SecretFlow's PSI library (spu=={SPU_VERSION}, the optional extra "
                f"tessera[psi]), which is published only for CPython 3.11 on Linux x86-64; "
                f"this is {here}")
    spec = importlib.util.find_spec("spu")
    if spec is None or not spec.submodule_search_locations:
        return (f"needs SecretFlow's PSI library, which is not installed: "
                f"pip install 'tessera[psi]' (or, keeping numpy 2: pip install --no-deps spu=={SPU_VERSION})")
    try:
        from importlib.metadata import version as dist_version

        got = dist_version("spu")
    except Exception:  # pragma: no cover - a package without metadata
        got = "unknown"
    if got != SPU_VERSION:
        return f"needs spu=={SPU_VERSION} (the optional extra tessera[psi]); spu {got} is installed"
    return None


def load_spu() -> tuple[ModuleType, ModuleType]:
    """``(spu.libspu, spu.libpsi)``: the extension modules only, without ``spu/__init__``."""
    if "spu.libpsi" in sys.modules and "spu.libspu" in sys.modules:
        return sys.modules["spu.libspu"], sys.modules["spu.libpsi"]
    problem = spu_problem()
    if problem is not None:
        raise SpuMissing(problem)
    spec = importlib.util.find_spec("spu")
    assert spec is not None and spec.submodule_search_locations
    where = Path(next(iter(spec.submodule_search_locations)))
    mods = []
    for name in ("libspu", "libpsi"):  # libpsi uses libspu's link types
        full = f"spu.{name}"
        if full in sys.modules:
            mods.append(sys.modules[full])
            continue
        s = importlib.util.spec_from_file_location(full, where / f"{name}.so")
        if s is None or s.loader is None:
            raise SpuMissing(f"spu is installed at {where}, but {name}.so is missing")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        sys.modules[full] = mod  # a later `import spu` finds it instead of loading it twice
        mods.append(mod)
    return mods[0], mods[1]


def link_desc(ls: Any, job: dict[str, Any]) -> Any:
    """spu's link description for ``job``: its ``link_id`` and ``parties`` (name, endpoint),
    mutual TLS with its ``ca``/``cert``/``key`` files, its ``connect_retry_times``,
    ``connect_retry_interval_ms`` and ``recv_timeout_ms`` (also the HTTP timeout), and
    quick resends to a peer whose server is not up yet. ``ls`` is :func:`load_spu`'s first
    module."""
    desc = ls.link.Desc()
    desc.id = job["link_id"]
    for name, endpoint in job["parties"]:
        desc.add_party(name, endpoint)
    desc.enable_ssl = True
    for opts in (desc.client_ssl_opts, desc.server_ssl_opts):
        opts.cert.certificate_path = job["cert"]
        opts.cert.private_key_path = job["key"]
        opts.verify.ca_file_path = job["ca"]
        opts.verify.verify_depth = 1  # the federation CA signs party certificates directly
    desc.connect_retry_times = int(job["connect_retry_times"])
    desc.connect_retry_interval_ms = int(job["connect_retry_interval_ms"])
    desc.recv_timeout_ms = int(job["recv_timeout_ms"])
    desc.http_timeout_ms = int(job["recv_timeout_ms"])
    # a send to a peer whose server is not up yet is retried soon (spu's default: 1 s, +2 s)
    desc.retry_opts.retry_interval_ms = 100
    desc.retry_opts.retry_interval_incr_ms = 100
    desc.retry_opts.max_retry_interval_ms = 1000
    desc.retry_opts.max_retry = 10
    return desc


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Open the link and run psi_execute; see :func:`psi.spu.run_spu_keys` for the job."""
    ls, lp = load_spu()
    desc = link_desc(ls, job)
    t0 = time.perf_counter()
    ctx = ls.link.create_brpc(desc, int(job["rank"]))
    t_link = time.perf_counter() - t0
    try:
        cfg = lp.PsiExecuteConfig()
        pc = cfg.protocol_conf
        pc.protocol = {"rr22": lp.PsiProtocol.PROTOCOL_RR22,
                       "kkrt": lp.PsiProtocol.PROTOCOL_KKRT}[job["protocol"]]
        pc.receiver_rank = int(job["receiver_rank"])
        pc.broadcast_result = bool(job["broadcast"])
        if job["protocol"] == "rr22":
            pc.rr22_params.low_comm_mode = bool(job.get("low_comm", False))
        cfg.input_params.path = job["input"]
        cfg.input_params.selected_keys = ["k"]
        cfg.input_params.keys_unique = True  # tessera's normalisation made them unique
        cfg.output_params.path = job["output"]
        cfg.output_params.disable_alignment = True  # tessera sorts into the agreed order
        rep = lp.psi_execute(cfg, ctx)
        out: dict[str, Any] = {"original_count": int(rep.original_count),
               "intersection_count": int(rep.intersection_count)}
    except BaseException:
        ctx.stop_link()
        raise
    # no stop_link on success: brpc can abort the process when the peer closed first
    # (a shutdown race); main() exits when the parent says both parties are done.
    out["ctx"] = ctx
    out["load_seconds"] = round(float(job.get("load_seconds", 0.0)), 3)
    out["link_seconds"] = round(t_link, 3)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _die_with_parent() -> None:
    """A killed parent (kill -9) takes this worker with it: its port is free for the restart."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def main() -> int:
    _die_with_parent()
    t0 = time.time()
    with contextlib.suppress(SpuMissing):  # run() reports it
        load_spu()  # while the parent is still in its handshake: 0.2-2 s off the run
    loaded = time.time() - t0
    line = sys.stdin.readline()
    if not line:
        return 0  # the parent gave up before sending a job
    job = json.loads(line)
    job["load_seconds"] = loaded
    report = Path(job["report"])
    try:
        out = run(job)
    except BaseException as e:
        report.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 3
    ctx = out.pop("ctx")
    tmp = report.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, report)  # the result is complete before anything can go wrong below
    # the parent closes our stdin once both parties have their results (told over the
    # router): then no spu message of this run is still in flight, and we exit at once
    sys.stdin.read()
    del ctx
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
