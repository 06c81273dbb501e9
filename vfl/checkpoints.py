"""Epoch checkpoints of one party's side of a split training run.

``epoch-NNNN.pt`` files in the party's own directory, written atomically, the newest
``keep`` kept (a crash between the two parties' writes needs the previous epoch).
Each holds a ``fingerprint`` of the run's settings and data; a checkpoint of another
run is refused. Read with ``torch.load(weights_only=True)``: own files only, never a
peer's bytes. HE keys are never checkpointed (a resumed run makes fresh keys).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from party.errors import ConfigError
from party.files import atomic_path, sweep_stale_tmp


def fingerprint(**kw: Any) -> str:
    """A short digest of a run's settings (which checkpoints belong to it)."""
    return hashlib.sha256(repr(sorted(kw.items())).encode()).hexdigest()[:16]


class Checkpoints:
    """``epoch-NNNN.pt`` files in one directory (None: checkpoints off)."""

    def __init__(self, directory: str | None, keep: int) -> None:
        self.dir = Path(directory) if directory else None
        self.keep = keep
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            sweep_stale_tmp(self.dir)

    def epochs(self) -> list[int]:
        """The epochs this party can resume from, oldest first."""
        if self.dir is None:
            return []
        out = []
        for p in self.dir.glob("epoch-*.pt"):
            try:
                out.append(int(p.stem.split("-")[1]))
            except ValueError:
                continue
        return sorted(out)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        if self.dir is None:
            return
        with atomic_path(self.dir / f"epoch-{epoch:04d}.pt") as tmp:
            torch.save(state, tmp)
        for e in self.epochs()[: -self.keep]:
            (self.dir / f"epoch-{e:04d}.pt").unlink(missing_ok=True)

    def load(self, epoch: int, fingerprint: str) -> dict[str, Any]:
        assert self.dir is not None
        path = self.dir / f"epoch-{epoch:04d}.pt"
        try:
            state = torch.load(path, weights_only=True)  # own file; never a peer's bytes
        except Exception as e:
            raise ConfigError(f"checkpoint {path} is unreadable: {e}") from None
        if state.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"checkpoint {path} belongs to another run (data, mode or settings changed); "
                "use a fresh checkpoint_dir"
            )
        return dict(state)


__all__ = ["Checkpoints", "fingerprint"]
