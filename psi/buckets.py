"""Bounded memory for rr22/kkrt at any size: stream the file, bucket it on disk, one spu run per bucket.

``vfl.align --protocol rr22 --buckets B`` (:func:`align_csv_buckets`) never holds the
whole table, nor its keys, in memory, neither in Python nor in spu:

1. **Partition** (before connecting: bad input is refused first). The CSV is read in blocks
   of about 16 MB cut at record ends (:func:`_batches`, every cell text: memory stays flat
   in the file size); each batch's ID columns are normalised (:mod:`psi.normalize`, the same
   keys as the in-memory path) and each row goes, with its canonical key and its row number,
   to bucket ``BLAKE2b_key(canonical key) mod B`` (an Arrow IPC file per bucket, in a
   private temporary directory). The hash key comes from the salt (as a hash), the session
   and ``B``, which both parties share, so an ID lands in the same bucket at both.
2. **Per bucket** ``b = 0 … B-1``, in that order at both parties: the bucket's rows are
   loaded (≈ 1/B of the file), duplicates across batches found (equal keys share a
   bucket), the keys padded with random dummy keys to this party's largest bucket
   (a dummy starts with the byte 0xff, which no UTF-8 canonical key contains, so
   none can match), and one spu run (:func:`psi.spu.run_spu_keys`: handshake,
   mutual TLS, result digest confirmed) gives the shared keys in sorted order; those
   rows are appended to the output.
3. The output (rows of bucket 0 in key order, then bucket 1, …) is the same order at
   both parties; it is written to a temporary file and renamed when complete.

What this adds to what each party learns (:mod:`psi.spu`): the number of buckets and
the peer's largest bucket size (≈ n/B + a few √(n/B)): nothing of the per-bucket
histogram, which the padding hides. The bucket hash is not secret (both parties know
it) and need not be: buckets are local; only their padded sizes are revealed.

Limits: inner join and mode ``"both"`` only, CSV in and CSV out; no checkpoint (a
killed run starts again); one spu link per bucket (its set-up, ≈ 1–3 s, is paid B
times). ``B`` sets the memory: about that of an unbucketed run of n/B rows.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from party.errors import ConfigError
from party.files import atomic_path, peak_rss_mb
from party.handshake import open_run
from party.party import Party
from psi.normalize import Duplicates, IdError, NormalizeReport, PackedKeys, normalize_ids
from psi.protocol import PsiConfig

KEY_COL, ROW_COL = "__tessera_key", "__tessera_row"
DUMMY_PREFIX = b"\xff\xfetessera-dummy:"
BATCH_BYTES = 16 << 20  # input per batch (_batches): ≈ 16 MB, ≈ 350k rows
#: the longest record (quoted newlines included) a --buckets CSV may have
MAX_RECORD_BYTES = 64 << 20
#: partition()'s result and its temporary directory: (files, report, schema, rows per bucket, dir)
Prepared = tuple[list[Path], NormalizeReport, Any, np.ndarray, Path]


def bucket_key(config: PsiConfig, session: str, buckets: int) -> bytes:
    """The bucket hash key both parties derive (salt as a hash, session, bucket count)."""
    return hashlib.sha256(b"tessera-psi buckets\x00" + hashlib.sha256(config.salt).digest()
                          + session.encode() + b"\x00" + str(buckets).encode()).digest()[:32]


def bucket_of(keys: PackedKeys, key: bytes, buckets: int) -> np.ndarray:
    """The bucket of each canonical key (keyed BLAKE2b, 64 bits, mod ``buckets``)."""
    out = np.empty(len(keys), dtype=np.uint64)
    blake = hashlib.blake2b
    for i, k in enumerate(keys):
        out[i] = int.from_bytes(blake(k, key=key, digest_size=8).digest(), "little")
    return (out % np.uint64(buckets)).astype(np.int64)


def _packed(col: Any) -> PackedKeys:
    """An Arrow binary column as :class:`PackedKeys` (one copy of the bytes)."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = arr.cast(pa.large_binary())
    if len(arr) == 0:
        return PackedKeys(b"", np.zeros(1, dtype=np.int64))
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    data = arr.buffers()[2].to_pybytes()[int(offs[0]):int(offs[-1])]
    return PackedKeys(data, offs - offs[0])


def _record_ends(buf: bytes) -> np.ndarray:
    """The index just past each line end of ``buf`` that is outside quotes, in order.

    ``buf`` starts at a record boundary. A newline ends a record unless it is inside a quoted
    field, that is, unless an odd number of ``"`` precede it (RFC 4180: a quote inside a
    quoted field is doubled, so it adds two)."""
    a = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(a == 10)
    quotes = np.flatnonzero(a == 34)
    if quotes.size:
        nl = nl[np.searchsorted(quotes, nl) % 2 == 0]
    return nl + 1


def _batches(path: Path) -> Iterator[Any]:
    """The CSV's rows in batches of about ``BATCH_BYTES`` of input, every cell text.

    Not Arrow's streaming reader (``pyarrow.csv.open_csv``): it reads ahead and holds the
    whole file in memory (570 MB of RSS for a 570 MB CSV, measured here; apache/arrow#6764).
    The file is read in blocks cut at record ends (:func:`_record_ends`, so quoted newlines
    are kept whole), and each block, with the header record, goes to ``read_csv``."""
    import csv
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert: Any = None
    head: bytes | None = None
    carry = b""
    done = 0  # bytes of the file before ``carry``
    with open(path, "rb") as raw:
        while True:
            chunk = raw.read(BATCH_BYTES)
            buf = carry + chunk
            if chunk and len(buf) > MAX_RECORD_BYTES:  # never rescan a growing buffer
                raise ConfigError(
                    f"{path}: no end of a record in the {len(buf) >> 20} MB after byte {done}: "
                    "a quoted field that is never closed?")
            ends = _record_ends(buf)
            if head is None:
                if not ends.size and chunk:
                    carry = buf
                    continue
                cut = int(ends[0]) if ends.size else len(buf)
                head, buf, ends = buf[:cut], buf[cut:], ends[1:] - cut
                done += cut
                text = head.decode("utf-8-sig")  # a non-UTF-8 header fails as before
                names = next(csv.reader(io.StringIO(text, newline="")), [])
                if not names or len(set(names)) != len(names):
                    raise ConfigError(
                        f"{path}: a header with distinct column names is needed for --buckets")
                convert = pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False,
                    quoted_strings_can_be_null=False, null_values=[])
            if chunk:
                if not ends.size:
                    carry = buf
                    continue
                cut = int(ends[-1])
                piece, carry = buf[:cut], buf[cut:]
                done += cut
            else:
                piece, carry = buf, b""
            if piece.strip():
                t = pacsv.read_csv(pa.py_buffer(head + piece), parse_options=parse,
                                   convert_options=convert)
                yield from t.combine_chunks().to_batches()
            if not chunk:
                return


def partition(path: Path, id_columns: Sequence[str], config: PsiConfig, duplicates: Duplicates,
              key: bytes, buckets: int, workdir: Path) -> tuple[list[Path], NormalizeReport, Any, np.ndarray]:
    """Stream ``path`` into ``buckets`` Arrow files in ``workdir``; (files, report, schema, rows per bucket)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    files = [workdir / f"bucket-{b:05d}.arrow" for b in range(buckets)]
    writers: list[Any] = []
    rep = NormalizeReport()
    offset = 0
    schema = None
    sizes = np.zeros(buckets, dtype=np.int64)
    try:
        for batch in _batches(path):
            if schema is None:
                schema = batch.schema
                missing = [c for c in id_columns if c not in schema.names]
                if missing:
                    raise IdError(f"{path}: no column {', '.join(map(repr, missing))} "
                                  f"(columns: {', '.join(schema.names[:20])})")
                full = schema.append(pa.field(KEY_COL, pa.large_binary())).append(pa.field(ROW_COL, pa.int64()))
                writers = [pa.ipc.new_file(str(f), full) for f in files]
            cols = [pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([batch.column(c)])))
                    for c in id_columns]
            try:
                norm = normalize_ids(cols, config.normalize, duplicates=duplicates, names=list(id_columns))
            except IdError as e:
                raise IdError(f"{path} (rows {offset}..{offset + batch.num_rows - 1}): {e}") from None
            for k in ("rows", "kept", "typed_values", "stripped", "unicode_changed", "case_folded",
                      "numbers_canonicalised", "leading_zero_strings", "decimal_strings",
                      "duplicates_dropped"):
                setattr(rep, k, getattr(rep, k) + getattr(norm.report, k))
            rep.notes = list(dict.fromkeys([*rep.notes, *norm.report.notes]))
            kept = pa.array(norm.rows)
            bk = bucket_of(norm.keys, key, buckets)
            order = np.argsort(bk, kind="stable")
            counts = np.bincount(bk, minlength=buckets)
            sizes += counts
            t = pa.table({n: pc.take(batch.column(n), kept) for n in schema.names})
            t = t.append_column(KEY_COL, pa.array(norm.keys, type=pa.large_binary()))
            t = t.append_column(ROW_COL, pa.array(norm.rows + offset))
            t = t.take(pa.array(order))
            a = 0
            for b in range(buckets):
                if counts[b]:
                    writers[b].write_table(t.slice(a, int(counts[b])))
                a += int(counts[b])
            offset += batch.num_rows
    finally:
        for w in writers:
            w.close()
    if schema is None:
        raise ConfigError(f"{path}: no data rows (only a header?); nothing to align")
    return files, rep, schema, sizes


def _load(f: Path, duplicates: Duplicates) -> tuple[Any, int]:
    """One bucket's rows, in input order, duplicates across batches dropped or refused."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with pa.memory_map(str(f)) as src:
        t = pa.ipc.open_file(src).read_all()
    t = t.combine_chunks()
    if t.num_rows < 2:
        return t, 0
    t = t.take(pc.sort_indices(t, sort_keys=[(KEY_COL, "ascending"), (ROW_COL, "ascending")]))
    k = t.column(KEY_COL)
    same = pc.equal(k.slice(1), k.slice(0, t.num_rows - 1)).to_numpy(zero_copy_only=False)
    dup = np.concatenate(([False], same))
    n_dup = int(dup.sum())
    if n_dup and duplicates == "error":
        raise IdError(f"{n_dup} rows repeat an ID of an earlier part of the file after normalisation; "
                      "pass duplicates='keep-first' (--duplicates keep-first) to keep the first row")
    if n_dup:
        t = t.filter(pa.array(~dup))
    return t.take(pc.sort_indices(t.column(ROW_COL))), n_dup


def align_csv_buckets(
    party: Party,
    input: str | os.PathLike[str],
    id_columns: Sequence[str],
    output: str | os.PathLike[str],
    *,
    peers: Sequence[str] | None = None,
    config: PsiConfig,
    link: Any,
    buckets: int,
    duplicates: Duplicates = "error",
    session: str = "align",
    timeout_s: float = 600.0,
    partitioned: Prepared | None = None,
) -> dict[str, Any]:
    """Align ``input`` (CSV) into ``output`` (CSV) bucket by bucket; returns the report.

    ``partitioned`` is :func:`prepare`'s result (the CLI partitions before connecting)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from psi.spu import run_spu_keys

    if config.protocol == "ecdh" or config.join != "inner" or config.mode != "both":
        raise ConfigError("--buckets needs --protocol rr22 or kkrt, --join inner and --mode both "
                          f"(not {config.protocol}, {config.join}, {config.mode})")
    peers = list(party.peers if peers is None else peers)
    if len(peers) != 1:
        raise ConfigError(f"--buckets needs exactly two parties, not {len(peers) + 1}")
    t0 = time.perf_counter()
    prep = partitioned or prepare(input, id_columns, config, duplicates, session, buckets)
    files, rep, schema, sizes, work = prep
    parties = sorted([party.name, *peers])
    # the bucket count is compared before any bucket runs: a peer with another B is named
    open_run(party, peers, protocol="psi", session=f"{session}:buckets",
             info={**config.run_info(parties), "buckets": len(files)}, timeout_s=timeout_s)
    stats0 = party.transport.stats.snapshot()
    shared = 0
    own_rows = 0
    unique = 0
    peer_rows = 0
    spu_seconds = 0.0
    worker_rss = 0.0
    try:
        pad_to = int(sizes.max())  # every bucket is padded to this party's largest
        out_schema = pa.schema([schema.field(n) for n in schema.names])
        with atomic_path(Path(output)) as tmp:
            with pacsv.CSVWriter(str(tmp), out_schema) as w:
                for b, f in enumerate(files):
                    t, n_dup = _load(f, duplicates)
                    rep.duplicates_dropped += n_dup
                    rep.kept -= n_dup
                    keys = _packed(t.column(KEY_COL))
                    unique += len(keys)
                    n_real = len(keys)
                    dummies = [DUMMY_PREFIX + os.urandom(16) for _ in range(max(0, pad_to - n_real))]
                    padded = PackedKeys(keys.data + b"".join(dummies), np.concatenate(
                        (keys.offsets, keys.offsets[-1] + np.cumsum([len(d) for d in dummies], dtype=np.int64))))
                    res, _ = run_spu_keys(party, padded, peers=peers, config=config, link=link,
                                          session=f"{session}:bucket:{b}:of:{len(files)}",
                                          timeout_s=timeout_s)
                    rows = res.rows if res.rows is not None else np.zeros(0, dtype=np.int64)
                    rows = rows[rows < n_real]  # a dummy never matches; dropped all the same
                    peer_rows = max(peer_rows, next(iter(res.peer_sizes.values())))
                    spu_seconds += float(res.backend.get("spu_seconds") or 0.0)
                    worker_rss = max(worker_rss, float(res.backend.get("worker_peak_rss_mb") or 0.0))
                    shared += len(rows)
                    if len(rows):
                        w.write_table(t.select(schema.names).take(pa.array(rows)))
                    del t, keys, padded
                    gc.collect()  # give this bucket's memory back before the next one
                    pa.default_memory_pool().release_unused()
            own_rows = rep.rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats1 = party.transport.stats.snapshot()
    (peer,) = peers
    return {
        "party": party.name, "peers": {peer: None}, "peer_largest_bucket": peer_rows,
        "mode": config.mode, "protocol": config.protocol, "join": config.join,
        "buckets": len(files), "largest_bucket": pad_to,
        "own_rows": own_rows, "rows_with_unique_ids": unique,
        "duplicates_dropped": rep.duplicates_dropped, "shared_rows": shared,
        "output_rows": shared, "placeholder_rows": 0, "id_columns": list(id_columns),
        "seconds": round(time.perf_counter() - t0, 3),
        "bytes_sent": stats1["bytes_sent"] - stats0["bytes_sent"],
        "bytes_received": stats1["bytes_received"] - stats0["bytes_received"],
        "spu": {"spu_seconds": round(spu_seconds, 3), "worker_peak_rss_mb": worker_rss},
        "python_peak_rss_mb": round(peak_rss_mb(), 1),
        "normalization": {"options": config.normalize.public(),
                          **{k: v for k, v in rep.as_dict().items() if k not in ("rows", "kept")}},
        "input": str(input), "output": str(output),
    }


def prepare(input: str | os.PathLike[str], id_columns: Sequence[str], config: PsiConfig,
            duplicates: Duplicates, session: str, buckets: int) -> Prepared:
    """Partition ``input`` into ``buckets`` files in a private temporary directory (step 1)."""
    if buckets < 1:
        raise ConfigError(f"--buckets must be at least 1, not {buckets}")
    work = Path(tempfile.mkdtemp(prefix="tessera-psi-buckets-"))
    try:
        files, rep, schema, sizes = partition(Path(input), id_columns, config, duplicates,
                                              bucket_key(config, session, buckets), buckets, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return files, rep, schema, sizes, work


__all__ = ["align_csv_buckets", "bucket_key", "bucket_of", "partition", "prepare"]
