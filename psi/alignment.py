"""The alignment library call: :func:`align` (a DataFrame and a :class:`party.Party`)
and :func:`align_files` (paths), with the report each writes.

Both keep the rows whose IDs every party holds, in the agreed order of the PSI run
(:func:`psi.runner.run_psi_keys`), and report own rows, shared rows, duplicates
dropped, seconds and bytes. The CLI (``python -m vfl.align``) is :mod:`psi.align`,
which re-exports everything public here; the file formats are :mod:`psi.tables`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from party.files import write_atomic
from party.party import Party
from psi.normalize import Duplicates, IdError, NormalizedIds, normalize_ids
from psi.protocol import PsiConfig
from psi.runner import map_rows, run_psi_keys
from psi.tables import check_paths, read_table, take_rows, write_table


@dataclass
class AlignResult:
    """The aligned rows (``None`` where this party does not learn them) and the report."""

    table: pd.DataFrame | None
    rows: np.ndarray | None
    report: dict[str, Any] = field(default_factory=dict)


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


__all__ = ["AlignResult", "align", "align_files"]
