"""Atomic per-round checkpoints of the global model and the strategy's state.

Layout of a checkpoint directory::

    round_00007.npz     arrays: params/0..k, state/<name>/0..k (np.savez, no pickle)
    latest.json         manifest: round, file name, sha256 of the npz, history

The npz is written (atomically) before the manifest, and a checkpoint counts only
when ``latest.json`` names it with a matching sha256, so a kill at any instant
leaves either the previous checkpoint or the new one. Loading never unpickles.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfl.common import NDArrays
from party import ConfigError, write_atomic
from party.files import sweep_stale_tmp
from party.npy import load_npz

log = logging.getLogger("hfl.checkpoint")
MANIFEST = "latest.json"
KEEP = 2


@dataclass
class Checkpoint:
    """What a resumed server needs: the round completed, the model, strategy state, history."""

    round: int
    parameters: NDArrays
    strategy_state: dict[str, NDArrays]
    history: dict[str, Any]


def save_round(directory: str | Path, rnd: int, parameters: NDArrays,
               strategy_state: dict[str, NDArrays], history: dict[str, Any]) -> Path:
    """Checkpoint round ``rnd`` atomically; keeps the last two model files."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {f"params/{i}": np.asarray(a) for i, a in enumerate(parameters)}
    for name, xs in strategy_state.items():
        if "/" in name:
            raise ValueError(f"strategy state name {name!r} may not contain '/'")
        for i, a in enumerate(xs):
            arrays[f"state/{name}/{i}"] = np.asarray(a)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    data = buf.getvalue()
    fname = f"round_{rnd:05d}.npz"
    write_atomic(d / fname, data)
    manifest = {"round": rnd, "file": fname, "sha256": hashlib.sha256(data).hexdigest(),
                "num_arrays": len(parameters), "history": history}
    write_atomic(d / MANIFEST, json.dumps(manifest))
    for old in sorted(d.glob("round_*.npz"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return d / fname


def load_latest(directory: str | Path) -> Checkpoint | None:
    """The last complete checkpoint in ``directory``, or None when there is none.

    Raises:
        ConfigError: the manifest exists but its model file is missing or corrupt.
    """
    d = Path(directory)
    if not (d / MANIFEST).is_file():
        return None
    sweep_stale_tmp(d)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
        rnd, fname, digest = int(manifest["round"]), str(manifest["file"]), str(manifest["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{d / MANIFEST}: not a valid checkpoint manifest ({e})") from None
    path = d / Path(fname).name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"checkpoint {path} named by {d / MANIFEST} is unreadable: {e}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ConfigError(f"checkpoint {path} does not match the sha256 in {d / MANIFEST}")
    arrays = load_npz(data)
    n = int(manifest.get("num_arrays", 0))
    params = [arrays[f"params/{i}"] for i in range(n)]
    state: dict[str, NDArrays] = {}
    for k in arrays:
        if k.startswith("state/"):
            _, name, _i = k.split("/")
            state.setdefault(name, [])
    for name in state:
        i = 0
        while f"state/{name}/{i}" in arrays:
            state[name].append(arrays[f"state/{name}/{i}"])
            i += 1
    log.info("resuming from %s (round %d)", path, rnd)
    return Checkpoint(rnd, params, state, dict(manifest.get("history", {})))
