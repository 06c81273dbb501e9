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
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._soak_hfl import (
    HFL_CLIENTS,
    _maxdiff,
    _simulate,
    hfl_client_main,
    hfl_server_main,
)
from benchmarks._soak_procs import (
    PARTIES,
    ROOT,
    Proc,
    RunResult,
    check_outputs,
    git_state,
    loadavg,
    log,
    make_inputs,
    rss_mb,
    snapshot,
)

FINISHED = " shared with "  # in the line vfl.align prints after writing its output


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


# -- main -------------------------------------------------------------------------------------




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
