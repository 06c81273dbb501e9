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
working through :mod:`vfl.align`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from party.errors import ConfigError, TesseraError
from party.files import atomic_path, write_atomic
from party.party import Party
from psi.normalize import Duplicates, IdError, NormalizedIds, NormalizeOptions, normalize_ids
from psi.protocol import JOINS, MODES, PHASES, PROTOCOLS, PsiConfig
from psi.runner import map_rows, run_psi_keys

log = logging.getLogger(__name__)


@dataclass
class AlignResult:
    """The aligned rows (``None`` where this party does not learn them) and the report."""

    table: pd.DataFrame | None
    rows: np.ndarray | None
    report: dict[str, Any] = field(default_factory=dict)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (every cell as text, so ``"007"`` stays ``"007"``) or a Parquet file (typed)."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            fast = _read_csv_arrow(p, sep)
            if fast is not None:
                return fast
            return pd.read_csv(
                p, dtype=str, keep_default_na=False, na_filter=False, sep=sep, encoding="utf-8-sig"
            )
    except FileNotFoundError:
        raise ConfigError(f"input file {p} does not exist") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read {p}: {e}") from None
    raise ConfigError(f"{p}: unknown file type {suffix!r} (use .csv or .parquet)")


def _read_csv_arrow(p: Path, sep: str) -> pd.DataFrame | None:
    """The same frame as the pandas path (every cell text, nothing read as missing), read
    by Arrow's multi-threaded parser (6x faster at 1M rows); None: let pandas do it (and
    word any error)."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            names = next(csv.reader([f.readline()], delimiter=sep))
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return None
    if not names or len(set(names)) != len(names) or any(not n for n in names):
        return None  # pandas renames repeated or empty header names
    try:
        t = pacsv.read_csv(
            p, parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False,
                quoted_strings_can_be_null=False, null_values=[]))
    except (pa.ArrowException, OSError, ValueError):
        return None
    if t.column_names != names:
        return None
    return t.to_pandas()


_NEEDS_QUOTES = r'[",\r\n\t]'


def _write_csv_arrow(table: pd.DataFrame, tmp: Path, sep: str) -> bool:
    """Write text columns no value of which needs quoting with Arrow (10x faster than
    pandas, the same bytes); False: let pandas do it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if not all(pd.api.types.is_string_dtype(d) for d in table.dtypes):
        return False
    if any(not isinstance(c, str) or re.search(_NEEDS_QUOTES, c) for c in table.columns):
        return False
    try:
        t = pa.Table.from_pandas(table, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return False
    for col in t.columns:
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            return False
        if pc.any(pc.match_substring_regex(col, _NEEDS_QUOTES)).as_py():
            return False
    with open(tmp, "wb") as f:  # Arrow quotes header names always: the header is ours
        f.write((sep.join(table.columns) + "\n").encode("utf-8"))
        pacsv.write_csv(t, f, write_options=pacsv.WriteOptions(
            delimiter=sep, quoting_style="none", include_header=False))
    return True


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write CSV or Parquet (by extension) atomically: the old file or the complete new one."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".txt", ".tsv", ".parquet", ".pq"):
        raise ConfigError(f"{p}: unknown output type {suffix!r} (use .csv or .parquet)")
    with atomic_path(p) as tmp:
        if suffix in (".parquet", ".pq"):
            table.to_parquet(tmp, index=False)
        else:
            sep = "\t" if suffix == ".tsv" else ","
            if not _write_csv_arrow(table, Path(tmp), sep):
                table.to_csv(tmp, index=False, sep=sep)


_PathArg = tuple[str, str | os.PathLike[str] | None]


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: the same resolved path, or (both existing) the same inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_paths(
    inputs: Iterable[_PathArg],
    outputs: Iterable[_PathArg],
    checkpoint: _PathArg | None = None,
) -> None:
    """Refuse outputs that would overwrite an input, each other, or the private checkpoint.

    ``inputs`` and ``outputs`` are ``(label, path)`` pairs (a ``None`` path is skipped);
    ``checkpoint`` is the ``(label, directory)`` a resumable run writes its state to.
    Paths are compared after resolving symlinks and ``.``/``..`` (and by inode when both
    exist). Raises :class:`ConfigError` naming both paths. Touches no file and no network.
    """
    def given(pairs: Iterable[_PathArg]) -> list[tuple[str, str, Path]]:
        # (label, the path as the caller wrote it, for messages; the Path to compare)
        return [(label, os.fspath(p), Path(p)) for label, p in pairs if p is not None]

    ins, outs = given(inputs), given(outputs)
    for i, (olabel, oname, out) in enumerate(outs):
        for ilabel, iname, inp in ins:
            if _same_file(out, inp):
                raise ConfigError(
                    f"{olabel} {oname} is the same file as {ilabel} {iname} "
                    f"({out.resolve()}); refusing to overwrite an input"
                )
        for olabel2, oname2, out2 in outs[:i]:
            if _same_file(out, out2):
                raise ConfigError(
                    f"{olabel} {oname} and {olabel2} {oname2} are the same file ({out.resolve()}); "
                    "give each output its own path"
                )
    if checkpoint is not None and checkpoint[1] is not None:
        clabel, cname, ckpt = given([checkpoint])[0]
        cdir = ckpt.resolve()
        for label, name, p in [*ins, *outs]:
            if _same_file(p, ckpt):
                raise ConfigError(f"{clabel} {cname} is the same path as {label} {name}; "
                                  "the checkpoint needs a directory of its own")
        for label, name, p in outs:
            if cdir in p.resolve().parents:
                raise ConfigError(f"{label} {name} is inside {clabel} {cname}; the checkpoint "
                                  "directory is private to the run, write outputs elsewhere")


def _id_columns(table: pd.DataFrame, id_columns: Sequence[str], source: str) -> list[pd.Series]:
    if not id_columns:
        raise IdError("give at least one ID column")
    missing = [c for c in id_columns if c not in table.columns]
    if missing:
        cols = ", ".join(map(str, table.columns[:20]))
        raise IdError(f"{source}: no column {', '.join(map(repr, missing))} (columns: {cols})")
    dup = [c for c in id_columns if list(table.columns).count(c) > 1]
    if dup:
        raise IdError(f"{source}: column {dup[0]!r} appears more than once in the header")
    # the Series themselves: normalize_ids reads them in chunks, no list of every ID
    return [table[c] for c in id_columns]


def align(
    party: Party,
    table: pd.DataFrame,
    id_columns: Sequence[str],
    *,
    peers: Sequence[str] | None = None,
    config: PsiConfig | None = None,
    duplicates: Duplicates = "error",
    session: str = "align",
    timeout_s: float = 600.0,
    workers: int | None = None,
    progress: bool | None = None,
    source: str = "input",
    checkpoint: str | Path | None = None,
    keep_result: bool = False,
    link: Any = None,
    normalized: NormalizedIds | None = None,
    cache: str | Path | None = None,
) -> AlignResult:
    """Keep the rows of ``table`` whose IDs every party holds, in the agreed order.

    Args:
        party: this side of the federation.
        table: this party's rows.
        id_columns: the ID column(s); several make a composite key.
        peers: the other parties (default: all of ``party.peers``).
        config: PSI settings (mode, normalisation, salt); all parties must agree.
        duplicates: ``"error"`` (default) or ``"keep-first"``.
        session: tag session shared by the parties of one run.
        timeout_s: per-message deadline.
        workers: processes for group operations (default: all cores).
        progress: tqdm bar (default: when stderr is a terminal).
        source: name of the input, for messages.
        checkpoint: private directory to resume a killed run from (see :func:`psi.run_psi_keys`).
        link: for ``config.protocol`` rr22/kkrt, the :class:`psi.spu.SpuLink`
            (``SpuLink.from_federation(fed, name)``).
        normalized: the result of ``normalize_ids`` on these columns with this config
            and ``duplicates`` (the CLI checks the input with it first; not redone).
        cache: with ``config.mode="unbalanced"``, this party's private cache directory
            (:mod:`psi.unbalanced`); the offline phase (``config.phase="offline"``) fills
            it and aligns nothing (``table`` and ``rows`` are None), the online phase
            queries it.

    ``config.protocol`` picks the PSI protocol and ``config.join`` the join type; with
    an outer join the table holds placeholder rows (every column empty, NaN) where
    the peer has a customer this party lacks, so row i is the same customer at both.

    Returns:
        :class:`AlignResult`: the aligned table (all columns, index reset) and the report.

    Raises:
        IdError: a missing ID column, empty/NaN IDs, or duplicates (before connecting).
        ConfigMismatch: a peer uses another normalisation, salt or mode.
        PartyTimeout, PartyUnavailable: a peer stopped answering or disconnected.
    """
    t0 = time.perf_counter()
    config = config or PsiConfig()
    cols = _id_columns(table, id_columns, source)
    norm = normalized if normalized is not None else normalize_ids(
        cols, config.normalize, duplicates=duplicates, names=list(id_columns))
    stats0 = party.transport.stats.snapshot()
    res = run_psi_keys(
        party, norm.keys, peers=peers, config=config, session=session,
        timeout_s=timeout_s, workers=workers, progress=progress, checkpoint=checkpoint,
        keep_result=keep_result, link=link, cache=cache,
    )
    stats1 = party.transport.stats.snapshot()
    rows = None if res.rows is None else map_rows(norm.rows, res.rows)
    aligned = None if rows is None else take_rows(table, rows)
    report: dict[str, Any] = {
        "party": party.name,
        "peers": res.peer_sizes,
        "mode": config.mode,
        **({"phase": config.phase} if config.mode == "unbalanced" else {}),
        "protocol": config.protocol,
        "join": config.join,
        "output_rows": None if rows is None else len(rows),
        "placeholder_rows": None if rows is None else int((rows < 0).sum()),
        "id_columns": list(id_columns),
        "own_rows": len(table),
        "rows_with_unique_ids": len(norm.keys),
        "duplicates_dropped": norm.report.duplicates_dropped,
        "shared_rows": res.size,
        "seconds": round(time.perf_counter() - t0, 3),
        "bytes_sent": stats1["bytes_sent"] - stats0["bytes_sent"],
        "bytes_received": stats1["bytes_received"] - stats0["bytes_received"],
        "group_ops": res.group_ops,
        **({"unbalanced" if config.mode == "unbalanced" else "spu": res.backend}
           if res.backend else {}),
        "normalization": {
            "options": config.normalize.public(),
            **{k: v for k, v in norm.report.as_dict().items() if k not in ("rows", "kept")},
        },
    }
    return AlignResult(table=aligned, rows=rows, report=report)


def take_rows(table: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The rows ``rows`` of ``table`` in that order; -1 gives a placeholder row (all NaN)."""
    if len(rows) and rows.min() < 0:
        return table.reset_index(drop=True).reindex(rows).reset_index(drop=True)
    return table.iloc[rows].reset_index(drop=True)


def align_files(
    party: Party,
    input: str | Path,
    id_columns: Sequence[str],
    output: str | Path | None,
    *,
    report_path: str | Path | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """:func:`align` from a file to a file; returns the report (also written to ``report_path``).

    An ``output`` or ``report_path`` that is the same file as ``input`` (or as each
    other), or that lies in ``checkpoint``, is refused with :class:`ConfigError`
    before the input is read or any message is sent (see :func:`check_paths`).
    """
    check_paths([("input", input)], [("output", output), ("report_path", report_path)],
                ("checkpoint", kw.get("checkpoint")))
    table = read_table(input)
    result = align(party, table, id_columns, source=str(input), keep_result=True, **kw)
    report = _write_outputs(result, input, output, report_path)
    _clear_checkpoint(kw.get("checkpoint"))
    return report


def _clear_checkpoint(checkpoint: str | Path | None) -> None:
    """The outputs are written: the finished run's checkpoint is no longer needed."""
    if checkpoint is not None:
        from psi.checkpoint import Checkpoint

        Checkpoint(checkpoint).clear()


def _write_outputs(
    result: AlignResult,
    input: str | Path,
    output: str | Path | None,
    report_path: str | Path | None,
    t_start: float | None = None,
) -> dict[str, Any]:
    report = dict(result.report)
    report["input"] = str(input)
    report["output"] = None
    if result.table is not None and output is not None:
        write_table(result.table, output)
        report["output"] = str(output)
    if t_start is not None:  # the CLI: from reading the input to the written output
        report["seconds_end_to_end"] = round(time.perf_counter() - t_start, 3)
    if report_path is not None:
        write_atomic(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


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
