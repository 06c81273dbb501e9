"""Atomic file output (a reader sees the old file or the new complete one, never a part),
and the readers of small settings and state files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from party.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over it.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dst)
        with contextlib.suppress(OSError):
            dfd = os.open(dst.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[IO[Any]], None],
    *,
    mode: int | None = None,
) -> None:
    """Write ``data`` (bytes, text, or a function writing to a binary file) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            elif isinstance(data, str):
                f.write(data.encode("utf-8"))
            else:
                data(f)
        if mode is not None:
            os.chmod(tmp, mode)


def sweep_stale_tmp(directory: str | os.PathLike[str]) -> int:
    """Remove ``.*.tmp`` files left by a killed writer; returns how many."""
    n = 0
    for p in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


def data_dir() -> Path:
    """The offline data sets: ``$TESSERA_DATA``, else the repository's ``data/`` copy,
    else ``../shared/data`` beside the repository. Nothing is ever downloaded."""
    import os as _os

    root = Path(__file__).resolve().parents[1]
    candidates = [Path(p) for p in [_os.environ.get("TESSERA_DATA")] if p]
    candidates += [root / "data", root.parent / "shared" / "data"]
    for c in candidates:
        if (c / "fate").is_dir():
            return c
    raise FileNotFoundError(
        "offline data sets not found; looked in " + ", ".join(map(str, candidates))
        + " (set TESSERA_DATA to the folder holding fate/, mnist/, credit_default_taiwan/)"
    )


def read_tls(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a TLS file (certificate or key), or a ConfigError naming the setting ``what``."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror}") from None


def load_json(path: Path, unreadable: Callable[[Exception], Exception], missing: Any = None) -> Any:
    """The JSON value in ``path``; ``missing`` if there is no such file, and the exception
    ``unreadable(e)`` makes of the error if it cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return missing
    except (OSError, ValueError) as e:
        raise unreadable(e) from None


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident set in MB: Linux ``VmHWM`` of ``/proc/<pid>/status``.

    Not ``getrusage(...).ru_maxrss``: Linux carries a process's ``ru_maxrss`` over a
    ``fork``/``exec``, so a child started by a large parent reports the parent's size
    (a ``vfl.align`` started by a benchmark holding 3.3 GB of IDs said 3,356 MB; its own
    peak was a fraction of that). Elsewhere (no ``/proc``), ``ru_maxrss`` of this process;
    0.0 for another process that has gone.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    if pid != "self":
        return 0.0
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024.0 * 1024.0) if sys.platform == "darwin" else kb / 1024.0
