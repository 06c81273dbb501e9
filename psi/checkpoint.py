"""On-disk checkpoint of one party's PSI run, so a killed run resumes without redoing finished streams.

The directory holds ``state.json`` (this party's secret scalar, the session
nonces, the shuffle seed, a SHA-256 of its input keys and the public config;
mode 0600, never sent anywhere) and one ``.bin`` file per completed stream of
full values (``full-<party>.bin``, ``return.bin``, ``collect-<party>.bin``).
Every file is written atomically. A checkpoint made from other input or config
is refused (:class:`CheckpointMismatch`), never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from party.errors import ConfigError
from party.files import load_json, write_atomic


class CheckpointMismatch(ConfigError):
    """The checkpoint was made from other input IDs or another PSI config."""


def input_digest(keys: Sequence[bytes]) -> str:
    """SHA-256 over the canonical keys, in order."""
    h = hashlib.sha256()
    for k in keys:
        h.update(len(k).to_bytes(4, "little"))
        h.update(k)
    return h.hexdigest()


def _blob_name(step: str) -> str:
    kind, _, who = step.partition(":")
    return f"{kind}-{who.encode().hex()}.bin" if who else f"{kind}.bin"


class Checkpoint:
    """A directory of one party's PSI state (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    @property
    def _state(self) -> Path:
        return self.dir / "state.json"

    def load(self, *, digest: str, public: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state, or None; CheckpointMismatch if it belongs to other input/config."""
        state: dict[str, Any] | None = load_json(self._state, lambda e: CheckpointMismatch(
            f"checkpoint {self._state} is unreadable ({e}); delete it"))
        if state is None:
            return None
        if state.get("input_sha256") != digest:
            raise CheckpointMismatch(
                f"checkpoint in {self.dir} was made from other input IDs; "
                "delete the directory to start over"
            )
        if state.get("config") != public:
            raise CheckpointMismatch(
                f"checkpoint in {self.dir} was made with another PSI config; "
                "delete the directory to start over"
            )
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._state, json.dumps(state, sort_keys=True), mode=0o600)

    def have(self) -> list[str]:
        """Steps whose data is saved (``full:<party>``, ``return:<me>``, ``collect:<party>``)."""
        out = []
        for p in self.dir.glob("*.bin"):
            kind, _, who = p.stem.partition("-")
            try:
                out.append(f"{kind}:{bytes.fromhex(who).decode()}" if who else kind)
            except ValueError:
                continue
        return sorted(out)

    def save_blob(self, step: str, data: bytes) -> None:
        write_atomic(self.dir / _blob_name(step), data, mode=0o600)

    def load_blob(self, step: str) -> bytes:
        return (self.dir / _blob_name(step)).read_bytes()

    @property
    def _result(self) -> Path:
        return self.dir / "result.json"

    def save_result(self, *, digest: str, public: dict[str, Any], result: dict[str, Any],
                    rows: bytes) -> None:
        """The finished run's outcome (after every message was acknowledged): a party killed
        before it wrote its output restarts into it without needing its peers again."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / "result-rows.npy", rows, mode=0o600)
        write_atomic(self._result, json.dumps({"input_sha256": digest, "config": public,
                                               **result}, sort_keys=True), mode=0o600)

    def load_result(self, *, digest: str, public: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        """The saved outcome of a finished run of this input and config, or None."""
        try:
            res: dict[str, Any] = json.loads(self._result.read_text())
            rows = (self.dir / "result-rows.npy").read_bytes()
        except (OSError, ValueError):
            return None
        if res.get("input_sha256") != digest or res.get("config") != public:
            return None
        return res, rows

    def clear(self) -> None:
        """Remove the checkpoint (after a successful run, or to start over)."""
        for p in [*self.dir.glob("*.bin"), self._state, self._result, self.dir / "result-rows.npy"]:
            p.unlink(missing_ok=True)


__all__ = ["Checkpoint", "CheckpointMismatch", "input_digest"]
