"""Align parties' rows by private set intersection: same customers, same order, nothing else revealed.

Each party runs, with its own file (CSV or Parquet, by extension)::

    python -m vfl.align --config fed.toml --party bank    --input bank.csv    --id-column ID --output bank_aligned.csv
    python -m vfl.align --config fed.toml --party fintech --input fintech.csv --id-column ID --output fintech_aligned.csv

Each writes the rows of the customers every party holds, in one agreed order
(all original columns kept; written atomically) and, with ``--report``, a JSON
report (own rows, shared rows, duplicates dropped, seconds, bytes). Several
``--id-column`` flags make a composite key. The peers are every other party of
the federation, or ``--peers a,b``. ``--mode one --receiver bank`` lets only the
bank learn the intersection; ``--mode cardinality`` reveals only its size (no
output file then). ``--protocol ecdh|rr22|kkrt`` picks the PSI protocol (rr22/kkrt:
SecretFlow's OT-based PSI, two parties, each party's ``psi_endpoint`` in the
federation TOML; see :mod:`psi.spu`), ``--join inner|left|right|full|difference``
what each output holds (``--left PARTY`` for left/right/full; see :mod:`psi.join`:
rows a party lacks are empty placeholder rows, every join reveals only what the
inner join does). Bad input (missing column, empty/NaN or duplicate IDs) is
refused before connecting; a peer with another normalisation or salt is refused
in the first message. An output (``--output``, ``--report``) that is the same file
as an input (``--input``, ``--config`` and the certificates it names) or as the
other output, or that lies in the ``--checkpoint`` directory, is refused before
anything is read or sent (symlinks, ``./x`` and hard links count as the same file).
Errors print one line and exit with code 2.

The same is a library call: :func:`align` (a DataFrame and a :class:`party.Party`)
or :func:`align_files` (paths).

The code lives in :mod:`psi.align` (the general alignment tool: VFL, FTL and the
examples use it); ``python -m vfl.align`` and ``from vfl.align import align`` keep
working through :mod:`vfl.align`. This module is the CLI; the library call is
:mod:`psi.alignment` and the table files are :mod:`psi.tables` (their public names
are importable from here too).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from party.errors import ConfigError, TesseraError
from party.files import write_atomic
from psi.alignment import (
    AlignResult,
    _clear_checkpoint,
    _id_columns,
    _write_outputs,
    align,
    align_files,
)
from psi.normalize import NormalizeOptions, normalize_ids
from psi.protocol import JOINS, MODES, PHASES, PROTOCOLS, PsiConfig
from psi.tables import check_paths, read_table, take_rows, write_table

log = logging.getLogger(__name__)


# -- CLI ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m vfl.align",  # the entry point users know (psi.align's code)
        description="Align this party's rows with its peers' by private set intersection.",
    )
    ap.add_argument("--config", required=True, help="federation TOML")
    ap.add_argument("--party", required=True, help="this party's name in the federation")
    ap.add_argument("--input", required=True, help="this party's rows (.csv or .parquet)")
    ap.add_argument("--id-column", action="append", required=True, dest="id_columns",
                    help="ID column; repeat for a composite key")
    ap.add_argument("--output", help="aligned rows (.csv or .parquet); not written in cardinality mode")
    ap.add_argument("--report", help="JSON report path")
    ap.add_argument("--peers", help="comma-separated peers (default: every other party)")
    ap.add_argument("--mode", choices=list(MODES), default="both",
                    help="who learns what: both (default), one (--receiver), cardinality, or "
                         "unbalanced (a large party's one-time offline phase, then short online "
                         "queries by its peer; both learn the intersection; needs --cache)")
    ap.add_argument("--phase", choices=list(PHASES), default="online",
                    help="with --mode unbalanced: offline (build the cache, once; both parties) "
                         "or online (query it; the default)")
    ap.add_argument("--cache", help="with --mode unbalanced: this party's private cache directory")
    ap.add_argument("--protocol", choices=list(PROTOCOLS), default="ecdh",
                    help="PSI protocol: ecdh (any number of parties, through the router) or "
                         "rr22/kkrt (SecretFlow's, two parties, needs tessera[psi] on Python 3.11 "
                         "and each party's psi_endpoint in the federation TOML)")
    ap.add_argument("--join", choices=list(JOINS), default="inner",
                    help="what the output holds (default inner: the shared rows); left/right/full "
                         "add placeholder rows, difference keeps the rows not shared")
    ap.add_argument("--left", help="with --join left/right/full: the left party (default: first by name)")
    ap.add_argument("--receiver", help="with --mode one: the party that learns (default: first by name)")
    ap.add_argument("--duplicates", choices=["error", "keep-first"], default="error")
    ap.add_argument("--numbers", choices=["keep", "canonical"], default="keep",
                    help="'canonical': '007' and '1.0' match 7 and 1 (default keep)")
    ap.add_argument("--no-strip", action="store_true", help="keep surrounding whitespace")
    ap.add_argument("--no-casefold", action="store_true", help="IDs are case-sensitive")
    ap.add_argument("--unicode", choices=["NFC", "NFKC", "NFD", "NFKD", "none"], default="NFC")
    ap.add_argument("--salt", default="", help="a label or secret every party passes identically")
    ap.add_argument("--session", default="align", help="run name; all parties must use the same")
    ap.add_argument("--timeout-s", type=float, help="per-message deadline (default: federation's, min 600)")
    ap.add_argument("--workers", type=int, help="processes for group operations (default: all cores)")
    ap.add_argument("--checkpoint", help="private directory: a killed run resumes from it")
    ap.add_argument("--buckets", type=int,
                    help="with --protocol rr22/kkrt: stream the CSV into this many buckets on disk and "
                         "run one PSI per bucket (memory of n/B rows; both parties pass the same)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _tell_peers_and_exit(fed: Any, name: str, session: str, e: BaseException) -> None:
    """Fail fast: connect briefly and tell the peers why this party will not run (best effort).

    Peers waiting for this run raise PeerAborted at once; the router remembers the abort
    for a minute for peers that start after this process has exited.
    """
    from party.grpc_transport import GrpcTransport

    try:
        t = GrpcTransport.from_config(fed, name, connect_timeout_s=5.0)
    except Exception:
        return  # no router: nobody to tell
    try:
        t.abort(session, f"{name} refused its input: {e}")
    finally:
        t.close(linger_s=0)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        from party.config import load_federation

        fed = load_federation(args.config)
        me = fed.party(args.party)
        # before anything is read, sent or connected: never overwrite an input
        check_paths(
            [("--input", args.input), ("--config", args.config), ("[tls].ca", fed.tls.ca),
             (f"[parties.{me.name}].cert", me.cert), (f"[parties.{me.name}].key", me.key)],
            [("--output", args.output), ("--report", args.report)],
            ("--checkpoint", args.checkpoint),
        )
        peers = [p.strip() for p in args.peers.split(",")] if args.peers else [
            n for n in fed.parties if n != args.party
        ]
        for p in peers:
            fed.party(p)
        if args.mode != "one" and args.receiver:
            raise ConfigError("--receiver needs --mode one")
        if args.mode == "unbalanced" and not args.cache:
            raise ConfigError("--mode unbalanced needs --cache DIR (private to this party, kept "
                              "from the offline phase to the online phase)")
        if args.mode != "unbalanced" and (args.cache or args.phase != "online"):
            raise ConfigError("--cache and --phase need --mode unbalanced")
        config = PsiConfig(
            mode=args.mode,
            receiver=args.receiver,
            protocol=args.protocol,
            join=args.join,
            left=args.left,
            phase=args.phase,
            normalize=NormalizeOptions(
                strip=not args.no_strip,
                casefold=not args.no_casefold,
                unicode_form=None if args.unicode == "none" else args.unicode,
                numbers=args.numbers,
            ),
            salt=args.salt.encode(),
        )
        offline = args.mode == "unbalanced" and args.phase == "offline"
        if args.output is None and args.mode != "cardinality" and not offline:
            raise ConfigError("--output is required (except with --mode cardinality and "
                              "--phase offline)")
        link = None
        if args.protocol != "ecdh":
            from psi.spu import SpuLink, require_spu

            require_spu(args.protocol)
            link = SpuLink.from_federation(fed, args.party)
            for p in [args.party, *peers]:
                link.endpoint(p)  # every endpoint set, before anything is read
        timeout_s = args.timeout_s or max(600.0, fed.timeout_s)
        if args.buckets is not None:
            report = _main_buckets(args, fed, peers, config, link, timeout_s, t_start)
        else:
            report = _main_in_memory(args, fed, peers, config, link, timeout_s, t_start)
    except TesseraError as e:
        print(f"vfl.align: {e}", file=sys.stderr)
        return 2
    return _print_summary(args, peers, report)


def _main_buckets(args: argparse.Namespace, fed: Any, peers: list[str], config: PsiConfig,
                  link: Any, timeout_s: float, t_start: float) -> dict[str, Any]:
    """--buckets: the file streamed into buckets on disk, one spu run per bucket (psi.buckets)."""
    from party.grpc_transport import connect
    from psi.buckets import align_csv_buckets, prepare

    if Path(args.input).suffix.lower() != ".csv" or Path(args.output or "").suffix.lower() != ".csv":
        raise ConfigError("--buckets reads a .csv --input and writes a .csv --output")
    if args.checkpoint:
        raise ConfigError("--buckets runs without --checkpoint (a killed run starts again)")
    try:
        prep = prepare(args.input, args.id_columns, config, args.duplicates, args.session,
                       args.buckets)  # bad input is refused before the run starts
    except TesseraError as e:
        _tell_peers_and_exit(fed, args.party, args.session, e)
        raise
    with connect(fed, args.party) as party:
        report = align_csv_buckets(party, args.input, args.id_columns, args.output, peers=peers,
                                   config=config, link=link, buckets=args.buckets,
                                   duplicates=args.duplicates, session=args.session,
                                   timeout_s=timeout_s, partitioned=prep)
    report["seconds_end_to_end"] = round(time.perf_counter() - t_start, 3)
    if args.report is not None:
        write_atomic(args.report, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _main_in_memory(args: argparse.Namespace, fed: Any, peers: list[str], config: PsiConfig,
                    link: Any, timeout_s: float, t_start: float) -> dict[str, Any]:
    from party.grpc_transport import connect

    try:
        table = read_table(args.input)  # bad input is refused before the run starts ...
        if len(table) == 0:
            raise ConfigError(f"{args.input}: no data rows (only a header?); nothing to align")
        cols = _id_columns(table, args.id_columns, args.input)
        norm = normalize_ids(cols, config.normalize, duplicates=args.duplicates,
                             names=args.id_columns)
    except TesseraError as e:
        _tell_peers_and_exit(fed, args.party, args.session, e)  # ... and the peers are told
        raise
    with connect(fed, args.party) as party:
        result = align(
            party, table, args.id_columns, peers=peers, config=config,
            duplicates=args.duplicates, session=args.session, timeout_s=timeout_s,
            workers=args.workers, progress=False if args.no_progress else None,
            source=args.input, checkpoint=args.checkpoint, keep_result=True, link=link,
            normalized=norm, cache=args.cache,
        )
    report = _write_outputs(result, args.input, args.output, args.report, t_start)
    _clear_checkpoint(args.checkpoint)
    return report


def _print_summary(args: argparse.Namespace, peers: list[str], report: dict[str, Any]) -> int:
    for note in report["normalization"]["notes"]:
        print(f"vfl.align: note: {note}", file=sys.stderr)
    if report.get("phase") == "offline":
        ub = report.get("unbalanced", {})
        print(f"{args.party}: unbalanced offline phase done as {ub.get('role')}: a cache of "
              f"{ub.get('cache_items')} tags in {ub.get('cache')} ({report['seconds']:.1f} s)")
        return 0
    shared = report["shared_rows"]
    where = f" -> {report['output']}" if report["output"] else ""
    print(
        f"{args.party}: {report['own_rows']} rows, {shared if shared is not None else '?'} shared"
        f" with {', '.join(peers)}{where} ({report['seconds']:.1f} s)"
    )
    return 0


__all__ = ["AlignResult", "align", "align_files", "check_paths", "main", "read_table", "take_rows",
           "write_table"]

if __name__ == "__main__":
    raise SystemExit(main())
