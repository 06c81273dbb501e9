"""The main demo: bank + fintech vertical FL on localhost, end to end, in a few minutes.

    python -m examples.bank_fintech.run_local [--out DIR] [--smoke] [--epochs N] [--no-compare]

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

``--smoke`` uses 3,000 customers, batches of 256 and 3 epochs (about a minute). The
processes run under ``party.local.LocalFederation``: the first one that fails (or
Ctrl-C) stops every process; the exit code is 0 only if every step succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from examples.bank_fintech.common import PROGRESS
from party import ConfigError, cli
from party.local import LocalFederation


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


def echo(display: Display, started: list[float]) -> Callable[[str, str], None]:
    """LocalFederation's echo: progress lines drive the status line, the rest is logged."""

    def on_line(name: str, line: str) -> None:
        if line.startswith(PROGRESS):
            with contextlib.suppress(ValueError, KeyError):
                display.progress(json.loads(line[len(PROGRESS):]), started[0])
        elif name == "router" and (" INFO " in line or " DEBUG " in line):
            return  # connections are in logs/router.log
        elif line.strip():
            display.log(line if line.startswith(("[", " ")) else f"[{name}] {line}")

    return on_line


def make_inputs(work: Path, rows: int | None) -> tuple[Path, Path]:
    from examples.bank_fintech.task import drop_random_rows
    from party.files import data_dir

    guest = data_dir() / "fate" / "default_credit_hetero_guest.csv"
    host = data_dir() / "fate" / "default_credit_hetero_host.csv"
    for f in (guest, host):
        if not f.is_file():
            raise ConfigError(f"{f} not found (set TESSERA_DATA to the data directory)")
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
    ap = cli.parser("examples.bank_fintech.run_local", __doc__)
    cli.add_out(ap, help="where inputs, certificates, models and logs go (default: temp)")
    ap.add_argument("--smoke", action="store_true", help="3,000 customers, batch 256, 3 epochs")
    ap.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 12; smoke 3)")
    ap.add_argument("--no-compare", action="store_true", help="HE mode only (no plaintext/bank-only)")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="limit for the whole run")
    args = ap.parse_args(argv)
    display = Display()
    try:
        return cli.run("demo", lambda: run(args, display), errors=(OSError, ValueError))
    finally:
        display.clear()


def run(args: argparse.Namespace, display: Display) -> int:
    work = Path(args.out or tempfile.mkdtemp(prefix="tessera-vfl-demo-")).resolve()
    if args.out and (work / "fed.toml").exists():
        for sub in ("bank", "fintech"):
            shutil.rmtree(work / sub, ignore_errors=True)
    for sub in ("bank", "fintech"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    rows = 3000 if args.smoke else None
    epochs = args.epochs or (3 if args.smoke else 12)
    t_start = time.monotonic()
    started = [t_start]

    def left() -> float:
        return max(60.0, args.timeout_s - (time.monotonic() - t_start))

    print(f"tessera vertical FL demo - working directory {work}", flush=True)
    bank_csv, fintech_csv = make_inputs(work, rows)
    with LocalFederation({"bank": "active", "fintech": "passive"}, name="bank-fintech-demo",
                         out=work, timeout_s=120, echo=echo(display, started)) as fed:
        cfg = fed.config
        print(f"mTLS certificates in {fed.certs}; router on 127.0.0.1:{fed.port}", flush=True)

        print("\n== step 1: private set intersection (python -m vfl.align) ==", flush=True)
        fed.wait([fed.start(f"align-{n}", "vfl.align", "--config", cfg, "--party", n,
                            "--input", csv, "--id-column", "id",
                            "--output", work / n / f"{n}_aligned.csv",
                            "--report", work / n / "align_report.json", "--no-progress")
                  for n, csv in (("fintech", fintech_csv), ("bank", bank_csv))], timeout_s=600)

        print("\n== step 2: split-model training over gRPC + mTLS (HE mode"
              f"{'' if args.no_compare else ', then plaintext and bank-only for comparison'}) ==",
              flush=True)
        started[0] = time.monotonic()
        common: list[str | Path] = ["--config", cfg, "--timeout-s", "600", "--progress"]
        if not args.no_compare:
            common.append("--compare")
        fed.wait([fed.start("fintech", "examples.bank_fintech.fintech", *common,
                            "--party", "fintech", "--data", work / "fintech" / "fintech_aligned.csv",
                            "--out", work / "fintech"),
                  fed.start("bank", "examples.bank_fintech.bank", *common, "--party", "bank",
                            "--data", work / "bank" / "bank_aligned.csv", "--out", work / "bank",
                            "--epochs", epochs, "--batch-size", 256 if args.smoke else 1024)],
                 timeout_s=left())
        display.clear()

        print("\n== step 3: scoring in new processes from the saved model halves "
              "(--score, no retraining) ==", flush=True)
        common = ["--config", cfg, "--timeout-s", "600", "--score", "--held-out"]
        fed.wait([fed.start("fintech-score", "examples.bank_fintech.fintech", *common,
                            "--party", "fintech", "--data", work / "fintech" / "fintech_aligned.csv",
                            "--out", work / "fintech"),
                  fed.start("bank-score", "examples.bank_fintech.bank", *common, "--party", "bank",
                            "--data", work / "bank" / "bank_aligned.csv", "--out", work / "bank")],
                 timeout_s=left())
    scored = json.loads((work / "bank" / "scores_he.json").read_text())
    trained = json.loads((work / "bank" / "report.json").read_text())["results"]["he"]
    print(f"  held-out AUC from the saved halves {scored['auc']:.4f}, right after training "
          f"{trained['test_auc']:.4f}", flush=True)
    print(f"models: {work / 'bank'}/bank_model_he.pt, {work / 'fintech'}/fintech_model_he.pt; "
          f"report: {work / 'bank' / 'report.json'}; scores: {work / 'bank' / 'scores_he.csv'}; "
          f"logs: {fed.logs}")
    print(f"demo finished in {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
