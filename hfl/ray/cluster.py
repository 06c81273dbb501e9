"""Starting Ray (or joining a cluster), sizing the actor pool, naming a worker's failure."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

from party import ConfigError, TesseraError

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
#: a task result up to this size travels inline to the driver, not through the object store
INLINE_REPLY_BYTES = 16 * 1024 * 1024
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
    ``include_dashboard=False``; for a local instance also
    ``_system_config={"max_direct_call_object_size": INLINE_REPLY_BYTES}``, so a client's
    reply (its model, 0.8 MB for MNIST's 2NN) comes back inline with the task's result
    instead of through the object store (one round trip to the store less: about 2 ms of a
    2-core machine per client). ``address`` ("auto", "host:6379", "ray://host:10001")
    joins an existing cluster (whose own settings apply).

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
    if args["address"] == "local":
        system = dict(args.get("_system_config") or {})
        system.setdefault("max_direct_call_object_size", INLINE_REPLY_BYTES)
        args["_system_config"] = system
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
