"""The main demo: bank + fintech vertical FL on localhost, end to end, in a few minutes.

    python -m examples.bank_fintech.run_local [--workdir DIR] [--smoke] [--epochs N] [--no-compare]

1. Makes each party's input: FATE's default_credit guest file (labels + 13
   features) for the bank and host file (10 features) for the fintech, each
   with a *different* random 10% of customers removed.
2. Makes a CA and mTLS certificates (``party.certs``), a federation config, and
   starts the router (``python -m party.router``).
3. Runs ``python -m vfl.align`` for both parties (ECDH PSI): each learns only
   the shared customers, in one agreed order.
4. Runs ``bank.py`` and ``fintech.py`` as separate processes: split-model
   training with the cross-party layer on CKKS ciphertexts, scoring of the
   held-out customers, a saved model per party; with comparison runs in
   plaintext mode and bank-only (skip them with ``--no-compare``).
5. Prints the report (AUC HE vs plaintext vs bank-only, time, MB sent).
6. Runs ``bank.py --score`` and ``fintech.py --score`` as two *new* processes:
   each loads its saved half, and they score the held-out customers again over
   HE (fresh keys) without retraining; prints that AUC next to step 4's.

``--smoke`` uses 3,000 customers, batches of 256 and 3 epochs (about a minute). Every child
process is stopped if anything fails or on Ctrl-C; the exit code is 0 only if
every step succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from party.local import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = "@progress "


class Display:
    """One status line (progress bar) below the children's log lines."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tty = sys.stdout.isatty()
        self.status = ""
        self.last_plain = 0.0

    def log(self, line: str) -> None:
        with self.lock:
            if self.tty and self.status:
                sys.stdout.write("\r\033[K")
            sys.stdout.write(line + "\n")
            if self.tty and self.status:
                sys.stdout.write(self.status)
            sys.stdout.flush()

    def progress(self, rec: dict[str, Any], started: float) -> None:
        frac = rec["step"] / max(1, rec["steps"])
        bar = "#" * int(frac * 24)
        text = (f"  training [{rec['mode']}] epoch {rec['epoch'] + 1} "
                f"[{bar:<24}] step {rec['step']}/{rec['steps']}  {time.monotonic() - started:.0f} s")
        with self.lock:
            self.status = text
            if self.tty:
                sys.stdout.write("\r\033[K" + text)
                sys.stdout.flush()
            elif rec["step"] == rec["steps"] or time.monotonic() - self.last_plain > 10:
                self.last_plain = time.monotonic()
                sys.stdout.write(text + "\n")
                sys.stdout.flush()

    def clear(self) -> None:
        with self.lock:
            if self.tty and self.status:
                sys.stdout.write("\r\033[K")
                sys.stdout.flush()
            self.status = ""


class Children:
    """Child processes whose output is streamed with a prefix; all killed on exit."""

    def __init__(self, display: Display, log_dir: Path) -> None:
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []
        self.threads: list[threading.Thread] = []
        self.display = display
        self.log_dir = log_dir
        self.started = time.monotonic()

    def start(self, name: str, args: list[str]) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        p = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append((name, p))
        t = threading.Thread(target=self._pump, args=(name, p.stdout), daemon=True)
        t.start()
        self.threads.append(t)
        return p

    def _pump(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        with open(self.log_dir / f"{name}.log", "a") as log:
            for line in stream:
                log.write(line)
                line = line.rstrip("\n")
                if line.startswith(PROGRESS):
                    with contextlib.suppress(ValueError, KeyError):
                        self.display.progress(json.loads(line[len(PROGRESS):]), self.started)
                elif name == "router" and " INFO " in line:
                    continue  # connections are in logs/router.log
                elif line.strip():
                    self.display.log(line if line.startswith("[") or line.startswith(" ")
                                     else f"[{name}] {line}")

    def wait(self, procs: list[tuple[str, subprocess.Popen[str]]], timeout_s: float) -> None:
        """Wait for all of ``procs``; the first failure (or the timeout) stops everything."""
        deadline = time.monotonic() + timeout_s
        pending = list(procs)
        while pending:
            for name, p in list(pending):
                rc = p.poll()
                if rc is None:
                    continue
                pending.remove((name, p))
                if rc != 0:
                    raise RuntimeError(f"{name} failed (exit code {rc}); see {self.log_dir}/{name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(n for n, _ in pending)} did not finish within "
                                   f"{timeout_s:g} s")
            time.sleep(0.2)
        for t in self.threads:
            t.join(timeout=5)
        self.display.clear()

    def stop_all(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(p.pid, signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(p.pid, signal.SIGKILL)


def make_inputs(work: Path, rows: int | None) -> tuple[Path, Path]:
    from examples.bank_fintech.task import drop_random_rows
    from party.files import data_dir

    guest = data_dir() / "fate" / "default_credit_hetero_guest.csv"
    host = data_dir() / "fate" / "default_credit_hetero_host.csv"
    for f in (guest, host):
        if not f.is_file():
            raise RuntimeError(f"{f} not found (set TESSERA_DATA to the data directory)")
    if rows is not None:  # smoke run: the first `rows` customers of each file
        for src, name in ((guest, "guest_head.csv"), (host, "host_head.csv")):
            with open(src) as fi, open(work / name, "w") as fo:
                for i, line in enumerate(fi):
                    if i > rows:
                        break
                    fo.write(line)
        guest, host = work / "guest_head.csv", work / "host_head.csv"
    bank, fintech = work / "bank" / "bank.csv", work / "fintech" / "fintech.csv"
    nb = drop_random_rows(guest, bank, fraction=0.1, seed=101)
    nf = drop_random_rows(host, fintech, fraction=0.1, seed=202)
    print(f"inputs: bank.csv {nb} customers (labels + features), fintech.csv {nf} customers "
          f"(features); each lacks a different random 10%", flush=True)
    return bank, fintech


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--workdir", help="where inputs, certificates, models and logs go (default: temp)")
    ap.add_argument("--smoke", action="store_true", help="3,000 customers, batch 256, 3 epochs")
    ap.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 12; smoke 3)")
    ap.add_argument("--no-compare", action="store_true", help="HE mode only (no plaintext/bank-only)")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="limit for the whole run")
    args = ap.parse_args(argv)
    from party.certs import init_certs
    from party.config import write_federation

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tessera-vfl-demo-")).resolve()
    if args.workdir and (work / "fed.toml").exists():
        for sub in ("bank", "fintech", "logs", "certs"):
            shutil.rmtree(work / sub, ignore_errors=True)
    for sub in ("bank", "fintech", "logs"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    rows = 3000 if args.smoke else None
    epochs = args.epochs or (3 if args.smoke else 12)
    display = Display()
    kids = Children(display, work / "logs")
    t_start = time.monotonic()
    try:
        print(f"tessera vertical FL demo - working directory {work}", flush=True)
        bank_csv, fintech_csv = make_inputs(work, rows)
        init_certs(work / "certs", ["bank", "fintech"], overwrite=True)
        port = free_port()
        cfg = write_federation(work / "fed.toml", name="bank-fintech-demo",
                               router=f"127.0.0.1:{port}",
                               parties={"bank": "active", "fintech": "passive"}, timeout_s=120)
        print(f"mTLS certificates in {work / 'certs'}; router on 127.0.0.1:{port}", flush=True)
        router = kids.start("router", ["-m", "party.router", "--config", str(cfg)])
        wait_port(port, router)

        print("\n== step 1: private set intersection (python -m vfl.align) ==", flush=True)
        psi = [(n, kids.start(f"align-{n}", [
            "-m", "vfl.align", "--config", str(cfg), "--party", n, "--input", str(csv),
            "--id-column", "id", "--output", str(work / n / f"{n}_aligned.csv"),
            "--report", str(work / n / "align_report.json"), "--no-progress"]))
            for n, csv in (("fintech", fintech_csv), ("bank", bank_csv))]
        kids.wait(psi, timeout_s=600)

        print("\n== step 2: split-model training over gRPC + mTLS (HE mode"
              f"{'' if args.no_compare else ', then plaintext and bank-only for comparison'}) ==",
              flush=True)
        kids.started = time.monotonic()
        common = ["--config", str(cfg), "--timeout-s", "600", "--progress"]
        if not args.no_compare:
            common.append("--compare")
        fin = kids.start("fintech", [
            "-m", "examples.bank_fintech.fintech", *common, "--party", "fintech",
            "--data", str(work / "fintech" / "fintech_aligned.csv"), "--out", str(work / "fintech")])
        bank = kids.start("bank", [
            "-m", "examples.bank_fintech.bank", *common, "--party", "bank",
            "--data", str(work / "bank" / "bank_aligned.csv"), "--out", str(work / "bank"),
            "--epochs", str(epochs), "--batch-size", str(256 if args.smoke else 1024)])
        left = max(60.0, args.timeout_s - (time.monotonic() - t_start))
        kids.wait([("fintech", fin), ("bank", bank)], timeout_s=left)

        print("\n== step 3: scoring in new processes from the saved model halves "
              "(--score, no retraining) ==", flush=True)
        common = ["--config", str(cfg), "--timeout-s", "600", "--score", "--held-out"]
        fin = kids.start("fintech-score", [
            "-m", "examples.bank_fintech.fintech", *common, "--party", "fintech",
            "--data", str(work / "fintech" / "fintech_aligned.csv"), "--out", str(work / "fintech")])
        bank = kids.start("bank-score", [
            "-m", "examples.bank_fintech.bank", *common, "--party", "bank",
            "--data", str(work / "bank" / "bank_aligned.csv"), "--out", str(work / "bank")])
        left = max(60.0, args.timeout_s - (time.monotonic() - t_start))
        kids.wait([("fintech-score", fin), ("bank-score", bank)], timeout_s=left)
        scored = json.loads((work / "bank" / "scores_he.json").read_text())
        trained = json.loads((work / "bank" / "report.json").read_text())["results"]["he"]
        print(f"  held-out AUC from the saved halves {scored['auc']:.4f}, right after training "
              f"{trained['test_auc']:.4f}", flush=True)
    except KeyboardInterrupt:
        display.clear()
        print("interrupted; stopping every process", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, ValueError) as e:
        display.clear()
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        kids.stop_all()
    print(f"models: {work / 'bank'}/bank_model_he.pt, {work / 'fintech'}/fintech_model_he.pt; "
          f"report: {work / 'bank' / 'report.json'}; scores: {work / 'bank' / 'scores_he.csv'}; "
          f"logs: {work / 'logs'}")
    print(f"demo finished in {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
