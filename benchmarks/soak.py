"""Soak: one router up for a long time; many alignments with random start order, gaps and kill -9.

    python -m benchmarks.soak [--minutes 30] [--runs 50] [--rows 10000] [--kill-fraction 0.2]
                              [--hfl-rounds 20] [--seed 0] [--run-deadline-s 180] [--workdir DIR]

What it does (issue 12, "Benchmark"), all on 127.0.0.1 with mutual TLS:

1. Makes certificates and a federation TOML in a temporary directory and starts ONE
   router process (``python -m party.router``) that stays up for the whole soak.
2. Runs two-party alignments (``python -m vfl.align`` for ``bank`` and ``fintech``,
   each with its own ``--checkpoint``) one after the other until both ``--runs``
   and ``--minutes`` are reached. Each run has fresh ``--rows``-row CSV files with
   a known, varying intersection; the parties start in random order with a random
   gap (0-5 s); in ``--kill-fraction`` of the runs one party is killed (SIGKILL to
   its process group) 0.2-3 s after its start and restarted with the same
   arguments 0-2 s later (unless the kill hit a party that had already written its
   output and printed its result, i.e. its exit: that party is done, and a restart
   would be a new run with no peer; counted in ``soak_kills``' ``after_victim_finished``).
   A run is *ok* when both exit 0 (or finished, as above) with the right shared count,
   the same ID order in both outputs and intact rows; *wrong* when both exit 0 but
   an output is wrong; *hung* when it does not finish within ``--run-deadline-s``;
   *failed* when a party exits non-zero (a survivor that exits non-zero after its
   peer was killed is restarted once or twice and counted in
   ``soak_survivor_restarts``; that is not a failure if the run then completes).
3. Samples the router's RSS (``/proc/<pid>/status`` VmRSS) after the first run
   (warm) and after the last.
4. Runs ``--hfl-rounds`` HFL rounds against the same router: a server process
   (``hfl.start_server(host_router=False)``) and 4 client processes
   (``hfl.start_client``) with a small NumPy linear model; one client is killed
   (SIGKILL) mid-training and restarted. The final model is compared with an
   in-process ``hfl.simulate`` replay of the same rounds (the clients that failed
   in a round fail there too: should be bit-identical) and with a fault-free
   ``hfl.simulate`` (it differs by the rounds the killed client missed).

stdout: JSON figures only, one per line (``benchmarks/_emit.py``); progress and the
path of the logs of every failed run go to stderr. Exit code 1 if any run was
wrong, hung or failed, or HFL did not complete.

The code under test is copied into the working directory first (``code/``) and
every process runs from that copy, so edits to the tree during a long soak do
not change what is measured (``--live-tree`` to run from the tree itself).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("party", "psi", "vfl", "hfl", "secure_agg", "ftl", "he", "benchmarks")
PARTIES = ("bank", "fintech")
FINISHED = " shared with "  # in the line vfl.align prints after writing its output
HFL_CLIENTS = 4


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS from /proc; no psutil needed)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- processes --------------------------------------------------------------------------------


class Proc:
    """A child process in its own session (so SIGKILL reaches its worker processes too)."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log_path = log_path
        with open(log_path, "ab") as out:  # the child keeps its own descriptor
            self.p = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.p.pid

    def poll(self) -> int | None:
        return self.p.poll()

    def kill(self) -> None:
        """SIGKILL the whole process group (the party and any PSI worker processes)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.p.pid, signal.SIGKILL)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                self.p.wait(10)
        else:  # the leader is gone; make sure no worker of its group is left behind
            self.kill()
        self.poll()

    def wait(self, timeout_s: float) -> int | None:
        try:
            rc = self.p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self.poll()
        return rc

    def tail(self, n: int = 3) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])


# -- alignment runs ---------------------------------------------------------------------------


@dataclass
class RunResult:
    index: int
    outcome: str  # ok | wrong | hung | failed
    seconds: float
    shared: int
    order: list[str]
    gap_s: float
    kill: dict[str, Any] | None
    killed: bool
    survivor_restarts: int
    why: str = ""
    events: list[str] = field(default_factory=list)
    killed_after_finish: bool = False


def make_inputs(d: Path, rows: int, shared: int, rng: random.Random) -> set[str]:
    """bank.csv and fintech.csv with ``rows`` rows each, ``shared`` IDs in common; returns them."""
    n_ids = 2 * rows - shared
    ids = [f"C{n:010d}" for n in rng.sample(range(10**10), n_ids)]
    common = ids[:shared]
    own = {"bank": common + ids[shared:rows], "fintech": common + ids[rows:]}
    for name, rows_ids in own.items():
        rows_ids = list(rows_ids)
        rng.shuffle(rows_ids)
        with open(d / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", f"{name}_value"])
            for i in rows_ids:
                w.writerow([i, _value(name, i)])
    return set(common)


def _value(name: str, id_: str) -> str:
    """A per-row payload derived from the ID, so a shuffled or mixed-up row is detected."""
    return str((int(id_[1:]) * (7 if name == "bank" else 13)) % 1_000_003)


def check_outputs(d: Path, expected: set[str], logs: dict[str, Path]) -> str:
    """'' if both outputs hold exactly the shared IDs, in the same order, rows intact."""
    order: dict[str, list[str]] = {}
    for name in PARTIES:
        out = d / f"{name}_aligned.csv"
        if not out.is_file():
            return f"{name}: exit 0 but no {out.name}"
        with open(out, newline="") as f:
            r = csv.reader(f)
            header = next(r, None)
            if header != ["id", f"{name}_value"]:
                return f"{name}: output header {header}"
            ids = []
            for row in r:
                if len(row) != 2 or row[1] != _value(name, row[0]):
                    return f"{name}: row {row} is not an input row"
                ids.append(row[0])
        if len(ids) != len(expected) or set(ids) != expected:
            return (f"{name}: {len(ids)} rows ({len(set(ids) & expected)} of them shared), "
                    f"expected the {len(expected)} shared")
        said = logs[name].read_text(errors="replace")
        if f" {len(expected)} shared" not in said:
            return f"{name}: did not print '{len(expected)} shared'"
        order[name] = ids
    if order["bank"] != order["fintech"]:
        first = next(i for i, (a, b) in enumerate(zip(order["bank"], order["fintech"], strict=True)) if a != b)
        return f"the two outputs differ in ID order (first at row {first})"
    return ""


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path, code: Path) -> None:
        self.args = args
        self.work = work
        self.code = code
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(code)}
        self.env.pop("TESSERA_FEDERATION", None)
        self.env.pop("TESSERA_PARTY", None)
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.failed_dir = work / "failed"
        self.rng = random.Random(args.seed)
        self.children: list[Proc] = []
        self.router: Proc | None = None
        self.fed = work / "fed.toml"

    def start(self, args: list[str], log_path: Path) -> Proc:
        p = Proc(args, log_path, self.code, self.env)
        self.children.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.children:
            p.stop(timeout_s=5)

    # -- federation and router --
    def setup(self) -> None:
        from party.certs import init_certs
        from party.config import write_federation
        from party.local import free_port, wait_port

        clients = [f"client_{i}" for i in range(HFL_CLIENTS)]
        init_certs(self.work / "certs", [*PARTIES, "server", *clients], overwrite=True)
        port = free_port()
        write_federation(self.fed, name="soak", router=f"127.0.0.1:{port}",
                         parties={"bank": "active", "fintech": "passive", "server": "server",
                                  **dict.fromkeys(clients, "client")})
        self.router = self.start(["-m", "party.router", "--config", str(self.fed)],
                                 self.logs / "router.log")
        wait_port(port, self.router.p)
        log(f"router pid {self.router.pid} on 127.0.0.1:{port}")

    def router_alive(self) -> bool:
        return self.router is not None and self.router.poll() is None

    # -- one alignment run --
    def align_args(self, d: Path, name: str) -> list[str]:
        return ["-m", "vfl.align", "--config", str(self.fed), "--party", name,
                "--peers", "fintech" if name == "bank" else "bank",
                "--input", str(d / f"{name}.csv"), "--id-column", "id",
                "--output", str(d / f"{name}_aligned.csv"), "--checkpoint", str(d / f"ckpt_{name}"),
                "--no-progress"]

    def run_one(self, i: int) -> RunResult:
        a, rng = self.args, self.rng
        d = self.work / "runs" / f"run_{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        shared = rng.randint(max(1, a.rows // 20), a.rows - max(1, a.rows // 20))
        expected = make_inputs(d, a.rows, shared, rng)
        order = list(PARTIES)
        rng.shuffle(order)
        gap = round(rng.uniform(0.0, 5.0), 2)
        kill: dict[str, Any] | None = None
        vname = ""  # the party to kill ('' : none)
        kill_after = restart_after = 0.0
        if rng.random() < a.kill_fraction:
            vname = rng.choice(PARTIES)
            kill_after, restart_after = round(rng.uniform(0.2, 3.0), 2), round(rng.uniform(0.0, 2.0), 2)
            kill = {"party": vname, "after_s": kill_after, "restart_after_s": restart_after}
        t0 = time.monotonic()
        events: list[str] = []

        def ev(msg: str) -> None:
            events.append(f"{time.monotonic() - t0:7.2f}s {msg}")

        attempt = dict.fromkeys(PARTIES, 0)
        logs: dict[str, Path] = {}
        procs: dict[str, Proc | None] = dict.fromkeys(PARTIES)
        done: dict[str, bool] = dict.fromkeys(PARTIES, False)

        def launch(name: str, why: str) -> None:
            attempt[name] += 1
            logs[name] = d / f"{name}.{attempt[name]}.log"
            p = procs[name] = self.start(self.align_args(d, name), logs[name])
            ev(f"start {name} ({why}, attempt {attempt[name]}, pid {p.pid})")

        ev(f"{a.rows} rows each, {shared} shared; order {order[0]} then {order[1]} "
           f"after {gap} s; kill {kill}")
        launch(order[0], "first")
        second_at = t0 + gap
        kill_at: float | None = None
        restart_at: float | None = None
        killed = killed_after_finish = False
        survivor_restarts = 0
        done_at: dict[str, float] = {}
        kill_done_at: float | None = None
        outcome, why = "", ""
        deadline = t0 + a.run_deadline_s
        while not outcome:
            now = time.monotonic()
            if procs[order[1]] is None and now >= second_at:
                launch(order[1], "second")
            victim = procs[vname] if vname else None
            if victim is not None and kill_at is None:
                kill_at = victim.started + kill_after
            if victim is not None and kill_at is not None and not killed and now >= kill_at:
                if victim.poll() is None:
                    victim.kill()
                    victim.wait(10)
                    killed = True
                    kill_done_at = now
                    ev(f"kill -9 {vname} (pid {victim.pid}, "
                       f"{now - victim.started:.2f} s after its start)")
                    if FINISHED in logs[vname].read_text(errors="replace"):
                        # it had written its output and printed its result: the run was over
                        # for it (the kill hit the exit); a restart would be a new run
                        killed_after_finish = True
                        done[vname] = True
                        done_at[vname] = now
                        ev(f"{vname} had already written its output and printed its result "
                           "(the kill hit its exit): not restarted")
                    else:
                        restart_at = time.monotonic() + restart_after
                else:
                    ev(f"no kill: {vname} had already exited")
                    kill_at = float("inf")
            if restart_at is not None and now >= restart_at:
                restart_at = None
                launch(vname, "restart after kill")
            for name in PARTIES:
                p = procs[name]
                if p is None or done[name] or (restart_at is not None and name == vname):
                    continue
                rc = p.poll()
                if rc is None:
                    continue
                ev(f"{name} exited {rc}: {p.tail(2)}")
                if rc == 0:
                    done[name] = True
                    done_at[name] = time.monotonic()
                elif killed and name != vname and survivor_restarts < 2:
                    survivor_restarts += 1
                    launch(name, "survivor restart after its peer was killed")
                else:
                    outcome, why = "failed", f"{name} exited with code {rc}: {p.tail(2)}"
            if all(done.values()):
                err = check_outputs(d, expected, logs)
                outcome, why = ("wrong", err) if err else ("ok", "")
            elif not outcome and now > deadline:
                running = [n for n in PARTIES if procs[n] is not None and not done[n]]
                outcome, why = "hung", (f"not finished within {a.run_deadline_s:g} s "
                                        f"(still running: {', '.join(running) or 'none'})")
                if killed and vname in running:
                    other = next(n for n in PARTIES if n != vname)
                    if other in done_at and kill_done_at is not None:
                        why += (f"; {other} had exited 0 {done_at[other] - kill_done_at:+.2f} s "
                                f"from the kill of {vname}, so the restarted {vname} had no "
                                f"peer left to finish with")
            if not outcome:
                time.sleep(0.05)
        for p in procs.values():
            if p is not None:
                p.stop(timeout_s=5)
        self.children = [c for c in self.children if c.poll() is None or c is self.router]
        ev(f"outcome {outcome} {why}".rstrip())
        res = RunResult(i, outcome, round(time.monotonic() - t0, 2), shared, order, gap, kill,
                        killed, survivor_restarts, why, events, killed_after_finish)
        (d / "events.txt").write_text("\n".join(events) + "\n")
        if outcome == "ok":
            shutil.rmtree(d, ignore_errors=True)
        else:
            self.failed_dir.mkdir(exist_ok=True)
            dest = self.failed_dir / d.name
            shutil.move(str(d), dest)
            shutil.copy(self.logs / "router.log", dest / "router.log")
            log(f"run {i} {outcome}: {why}; logs in {dest}")
        return res

    # -- HFL --
    def hfl(self, rounds: int) -> dict[str, Any]:
        """Server + 4 client processes over the soak router; one client killed and restarted."""
        import numpy as np

        rng = self.rng
        d = self.work / "hfl"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        res_path = d / "result.json"
        server = self.start(["-m", "benchmarks.soak", "_hfl_server", str(self.fed), str(d),
                             str(rounds), str(self.args.seed)], d / "server.log")
        clients: dict[int, Proc] = {}

        def client(i: int, attempt: int) -> Proc:
            return self.start(["-m", "benchmarks.soak", "_hfl_client", str(self.fed), str(i)],
                              d / f"client_{i}.{attempt}.log")

        for i in range(HFL_CLIENTS):
            clients[i] = client(i, 1)
        victim = rng.randrange(HFL_CLIENTS)
        kill_after_round = rng.randint(1, max(1, rounds // 2))
        extra = round(rng.uniform(0.0, 0.3), 2)
        restart_after = round(rng.uniform(0.5, 2.0), 2)
        info: dict[str, Any] = {"victim": f"client_{victim}", "kill_after_round": kill_after_round,
                                "kill_delay_s": extra, "restart_after_s": restart_after,
                                "killed": False, "restarted": False}
        t0 = time.monotonic()
        deadline = t0 + max(180.0, 15.0 * rounds)
        hist = d / "out" / "history.json"
        done_round = 0
        while server.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                done_round = len(json.loads(hist.read_text()).get("rounds", []))
            if done_round >= kill_after_round:
                break
            time.sleep(0.05)
        if server.poll() is None and done_round < rounds:
            time.sleep(extra)
            clients[victim].kill()
            clients[victim].wait(10)
            info["killed"] = True
            info["killed_during_round"] = done_round + 1
            log(f"hfl: kill -9 client_{victim} after round {done_round}")
            time.sleep(restart_after)
            if server.poll() is None:
                clients[victim] = client(victim, 2)
                info["restarted"] = True
        rc = server.wait(max(1.0, deadline - time.monotonic()))
        info["server_exit"] = rc
        if rc is None:
            info["hung"] = True
            server.stop()
        outs = {}
        for i, p in clients.items():
            rci = p.wait(30)
            outs[f"client_{i}"] = rci
            if rci is None:
                p.stop()
        info["client_exits"] = outs
        info["seconds"] = round(time.monotonic() - t0, 1)
        result = json.loads(res_path.read_text()) if res_path.is_file() else None
        if result is None:
            info["rounds_completed"] = done_round
            info["ok"] = False
            self._keep_hfl(d)
            return info
        hrounds = result["rounds"]
        info["rounds_completed"] = len(hrounds)
        info["fit_failures"] = {r["round"]: r["fit_failures"] for r in hrounds if r["fit_failures"]}
        final = [np.asarray(a, dtype=np.float32) for a in result["parameters"]]
        survivors = {r["round"]: sorted(set(r["fit_clients"]) - set(r["fit_failures"]))
                     for r in hrounds}
        replay = _simulate(rounds, self.args.seed, survivors)
        clean = _simulate(rounds, self.args.seed, None)
        info["max_abs_diff_vs_replay"] = _maxdiff(final, replay)
        info["bit_identical_to_replay"] = all(a.tobytes() == b.tobytes()
                                              for a, b in zip(final, replay, strict=True))
        info["max_abs_diff_vs_fault_free"] = _maxdiff(final, clean)
        info["ok"] = (rc == 0 and len(hrounds) == rounds and info["bit_identical_to_replay"]
                      and all(v == 0 for v in outs.values()))
        if not info["ok"]:
            self._keep_hfl(d)
        return info

    def _keep_hfl(self, d: Path) -> None:
        self.failed_dir.mkdir(exist_ok=True)
        dest = self.failed_dir / "hfl"
        shutil.copytree(d, dest, dirs_exist_ok=True)
        shutil.copy(self.logs / "router.log", dest / "router.log")
        log(f"hfl phase did not complete cleanly; logs in {dest}")


# -- HFL pieces (run in the server/client processes and for the reference) --------------------

DIM = 5


def _hfl_strategy(on_fit: bool = True) -> Any:
    import hfl

    return hfl.FedAvg(fraction_fit=1.0, min_fit_clients=2, min_available_clients=2,
                      fraction_evaluate=0.0, min_evaluate_clients=0,
                      on_fit_config_fn=(lambda r: {"round": r}) if on_fit else None)


def _linear_client(i: int, *, sleep_s: float = 0.0, fail_rounds: set[int] | None = None) -> Any:
    """Linear regression [w (DIM,), b ()] by 3 GD steps on client ``i``'s data; deterministic."""
    import numpy as np

    import hfl

    rng = np.random.default_rng(1000 + i)
    x = rng.normal(size=(40 + 9 * i, DIM))
    y = x @ (np.arange(1, DIM + 1) / DIM) + 0.5 + 0.1 * rng.normal(size=len(x))

    class Linear(hfl.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[Any]:
            return [np.zeros(DIM, np.float32), np.zeros((), np.float32)]

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            if fail_rounds is not None and config.get("round") in fail_rounds:
                raise RuntimeError("replay: this client failed this round in the gRPC run")
            if sleep_s:
                time.sleep(sleep_s)  # a round lasts long enough for a kill to land mid-training
            w, b = (np.asarray(p, np.float64).copy() for p in parameters)
            for _ in range(3):
                err = x @ w + b - y
                w -= 0.05 * (x.T @ err / len(y))
                b -= 0.05 * err.mean()
            loss = float(np.mean((x @ w + b - y) ** 2))
            return [w.astype(np.float32), np.asarray(b, np.float32)], len(y), {"train_loss": loss}

        def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            w, b = (np.asarray(p, np.float64) for p in parameters)
            return float(np.mean((x @ w + b - y) ** 2)), len(y), {}

    return Linear()


def _simulate(rounds: int, seed: int, survivors: dict[int, list[str]] | None) -> list[Any]:
    """Final model of an in-memory run; with ``survivors``, clients outside a round's list fail it."""
    import numpy as np

    import hfl

    def client_fn(cid: str) -> Any:
        fails = None if survivors is None else {
            r for r, s in survivors.items() if f"client_{cid}" not in s}
        return _linear_client(int(cid), fail_rounds=fails)

    h = hfl.simulate(client_fn, HFL_CLIENTS, num_rounds=rounds, strategy=_hfl_strategy(), seed=seed)
    assert h.parameters is not None
    return [np.asarray(a) for a in h.parameters]


def _maxdiff(a: list[Any], b: list[Any]) -> float:
    import numpy as np

    return float(max(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
                     for x, y in zip(a, b, strict=True)))


def hfl_server_main(fed: str, d: str, rounds: str, seed: str) -> int:
    import logging

    import hfl

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    h = hfl.start_server(federation=fed, host_router=False, progress=False,
                         config=hfl.ServerConfig(num_rounds=int(rounds), round_timeout=60),
                         strategy=_hfl_strategy(), seed=int(seed), min_clients_at_start=HFL_CLIENTS,
                         checkpoint_dir=Path(d) / "ck", output_dir=Path(d) / "out",
                         wait_for_clients_s=120)
    assert h.parameters is not None
    out = {"rounds": h.rounds, "parameters": [a.tolist() for a in h.parameters]}
    tmp = Path(d) / "result.json.tmp"
    tmp.write_text(json.dumps(out))
    tmp.replace(Path(d) / "result.json")
    print(f"server: {len(h.rounds)} rounds", flush=True)
    return 0


def hfl_client_main(fed: str, i: str) -> int:
    import logging

    import hfl

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    why = hfl.start_client(client=_linear_client(int(i), sleep_s=0.15), federation=fed,
                           name=f"client_{i}", max_wait_time=120)
    print(f"client_{i}: {why}", flush=True)
    return 0 if why == "shutdown" else 1


# -- main -------------------------------------------------------------------------------------


def snapshot(dest: Path) -> Path:
    """Copy the packages under test to ``dest`` (edits to the tree then do not reach the soak)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in PACKAGES:
        if (ROOT / pkg).is_dir():
            shutil.copytree(ROOT / pkg, dest / pkg, ignore=ignore)
    return dest


def git_state() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", *PACKAGES)
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_files_under_test": len(dirty.splitlines()) if dirty else 0}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="keep the router up at least this long")
    ap.add_argument("--runs", type=int, default=50, help="at least this many alignments")
    ap.add_argument("--rows", type=int, default=10_000, help="rows per party per run")
    ap.add_argument("--kill-fraction", type=float, default=0.2)
    ap.add_argument("--hfl-rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-deadline-s", type=float, default=180.0, help="a run past this is hung")
    ap.add_argument("--workdir", help="default: a new temporary directory (kept)")
    ap.add_argument("--live-tree", action="store_true",
                    help="run the processes from the source tree instead of a copy")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_hfl_server"]:
        return hfl_server_main(*argv[1:])
    if argv[:1] == ["_hfl_client"]:
        return hfl_client_main(*argv[1:])
    args = parse(argv)
    if args.rows < 2:
        raise SystemExit("--rows must be >= 2")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tessera-soak-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    code = ROOT if args.live_tree else snapshot(work / "code")
    log(f"working directory {work} (code under test: {code}); failed runs' logs go to "
        f"{work / 'failed'}")
    if not args.live_tree and str(code) != str(ROOT):
        sys.path.insert(0, str(code))  # this process's own imports (certs, hfl reference) too
    cond: dict[str, Any] = {"rows": args.rows, "seed": args.seed, "kill_fraction": args.kill_fraction,
                            "runs_requested": args.runs, "minutes_requested": args.minutes,
                            "run_deadline_s": args.run_deadline_s, "cpus": os.cpu_count(),
                            "loadavg_start": loadavg(), **git_state()}
    soak = Soak(args, work, code)
    results: list[RunResult] = []
    rss: dict[str, float] = {}
    hfl_info: dict[str, Any] = {}
    t_start = time.monotonic()
    interrupted = False
    router_died = False
    try:
        soak.setup()
        assert soak.router is not None
        rss["boot"] = rss_mb(soak.router.pid)
        i = 0
        while i < args.runs or time.monotonic() - t_start < args.minutes * 60:
            r = soak.run_one(i)
            results.append(r)
            log(f"run {i}: {r.outcome} in {r.seconds:.1f} s, {r.shared} shared, "
                f"{r.order[0]} first, gap {r.gap_s} s"
                + (f", killed {r.kill['party']} at {r.kill['after_s']} s"
                   + (" (after it had finished)" if r.killed_after_finish else "")
                   if r.killed and r.kill else "")
                + (f", {r.survivor_restarts} survivor restart(s)" if r.survivor_restarts else "")
                + f"; {(time.monotonic() - t_start) / 60:.1f} min")
            if not soak.router_alive():
                router_died = True
                log(f"the router exited (code {soak.router.poll()}); see {soak.logs / 'router.log'}")
                break
            if i == 0:
                rss["start"] = rss_mb(soak.router.pid)
            i += 1
        if soak.router_alive():
            rss["end"] = rss_mb(soak.router.pid)
            if args.hfl_rounds > 0:
                hfl_info = soak.hfl(args.hfl_rounds)
                log(f"hfl: {json.dumps(hfl_info, default=str)}")
            if soak.router_alive():
                rss["after_hfl"] = rss_mb(soak.router.pid)
            else:
                router_died = True
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; reporting what ran")
    finally:
        minutes = (time.monotonic() - t_start) / 60
        soak.cleanup()
    n = {k: sum(r.outcome == k for r in results) for k in ("ok", "wrong", "hung", "failed")}
    cond.update(loadavg_end=loadavg(), router_survived=not router_died, partial=interrupted)
    secs = sorted(r.seconds for r in results)
    emit("soak_runs", len(results), "runs", ok=n["ok"], failed=n["failed"],
         seconds_p50=secs[len(secs) // 2] if secs else None, seconds_max=secs[-1] if secs else None,
         **cond)
    emit("soak_kills", sum(r.killed for r in results), "kills",
         planned=sum(r.kill is not None for r in results),
         after_victim_finished=sum(r.killed_after_finish for r in results), **cond)
    emit("soak_wrong_results", n["wrong"], "runs",
         runs=[{"run": r.index, "why": r.why} for r in results if r.outcome == "wrong"], **cond)
    emit("soak_hung_runs", n["hung"], "runs",
         runs=[{"run": r.index, "why": r.why} for r in results if r.outcome == "hung"], **cond)
    emit("soak_failed_runs", n["failed"], "runs",
         runs=[{"run": r.index, "why": r.why} for r in results if r.outcome == "failed"], **cond)
    emit("soak_survivor_restarts", sum(r.survivor_restarts for r in results), "restarts", **cond)
    emit("soak_router_rss_mb_start", rss.get("start"), "MB", after="first run (warm)",
         boot=rss.get("boot"), **cond)
    end = rss.get("end")
    growth = None if end is None or not rss.get("start") else round(end / rss["start"] - 1, 4)
    emit("soak_router_rss_mb_end", end, "MB", after=f"{len(results)} runs", growth=growth,
         after_hfl=rss.get("after_hfl"), **cond)
    emit("soak_minutes", round(minutes, 2), "min", **cond)
    emit("soak_hfl_rounds_completed", hfl_info.get("rounds_completed", 0), "rounds",
         rounds_requested=args.hfl_rounds, clients=HFL_CLIENTS, **hfl_info, **cond)
    bad = n["wrong"] + n["hung"] + n["failed"]
    hfl_bad = args.hfl_rounds > 0 and not hfl_info.get("ok")
    if bad or hfl_bad or router_died or interrupted:
        log(f"NOT CLEAN: {n}, hfl ok={hfl_info.get('ok')}, router died={router_died}; "
            f"logs under {work / 'failed'}")
        return 1
    log(f"clean: {n['ok']} runs ok; working directory {work}")
    return 0


def emit(figure: str, value: Any, unit: str, **conditions: Any) -> None:
    from benchmarks._emit import emit as _emit

    _emit(figure, value, unit, **json.loads(json.dumps(conditions, default=str)))


if __name__ == "__main__":
    raise SystemExit(main())
