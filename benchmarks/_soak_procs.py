"""Process and input helpers of the soak benchmark (``benchmarks/soak.py``).

A child process in its own session (``Proc``: SIGKILL reaches its workers too), the router's
RSS, the load average, one run's result record, the per-run CSV inputs with a known
intersection and the check of both aligned outputs, and the snapshot of the code under test.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("party", "psi", "vfl", "hfl", "secure_agg", "ftl", "he", "benchmarks")
PARTIES = ("bank", "fintech")


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


# -- code under test ------------------------------------------------------------------------


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
