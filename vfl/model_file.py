"""The saved-half file format of a trained split model (``save_model`` / ``load_model``).

One file per party, written atomically with ``torch.save`` and read with
``torch.load(weights_only=True)`` (never unpickled code; and a party only ever reads
its own file). A file holds only what its party owns: ``format``
(:data:`MODEL_FORMAT`), ``role``, ``party``, ``mode``, the model's random
``run_id``, ``k``, ``d``, ``n_features``, ``peers``, the party's ``model`` state and
its ``shares`` of the interactive weights (HE: its own share; plaintext: the active
party holds W_p). Never the peer's share, the momentum or any CKKS key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from party.errors import ConfigError
from party.files import atomic_path
from vfl.config import TrainConfig

#: ``format`` field of a file written by ``save_model``.
MODEL_FORMAT = "tessera.vfl.model/1"


def write_model(path: str | Path, state: dict[str, Any]) -> None:
    """Write one party's half (``format`` added) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, **state}, tmp)


def read_model(path: str | Path, role: str, party: str, config: TrainConfig | None) -> dict[str, Any]:
    """Load and check one party's saved half (own file: ``weights_only``, never pickle)."""
    try:
        st = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"model file {path} does not exist") from None
    except Exception as e:
        raise ConfigError(f"model file {path} is unreadable (not a saved model?): {e}") from None
    if not isinstance(st, dict) or st.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path} is not a tessera vertical-FL model file (format "
                          f"{MODEL_FORMAT!r}); save it with save_model() after fit()")
    if st.get("role") != role:
        raise ConfigError(f"{path} holds the {st.get('role')} party's half of a model; "
                          f"this is the {role} party ({party})")
    if st.get("party") != party:
        raise ConfigError(f"{path} was saved by party {st.get('party')!r}, not {party!r}")
    if config is not None and config.mode != st["mode"]:
        raise ConfigError(f"{path} was trained in mode {st['mode']!r}, but the config asks "
                          f"for mode {config.mode!r}")
    return dict(st)


def load_weights(model: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Put the saved weights into ``model``; a different architecture is a ConfigError."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"{path}: the model's architecture differs from the saved one "
                          f"({' '.join(x.strip() for x in first[:3])})") from None


def saved_share(st: dict[str, Any], key: str | None, shape: tuple[int, int], path: str | Path,
                what: str) -> np.ndarray:
    """The interactive weights saved under ``shares[key]`` (``shares`` itself: None), checked."""
    shares = st["shares"] if key is None else st["shares"][key]
    w = shares["w"].numpy().astype(np.float64)
    if w.shape != shape:
        raise ConfigError(f"{path}: {what} of shape {w.shape}")
    return np.asarray(w)


def check_width(x: np.ndarray, n_features: int, who: str) -> None:
    """Rows to score must have the trained feature count."""
    if x.shape[1] != n_features:
        raise ConfigError(f"{who}: {x.shape[1]} feature columns, but the model was trained on "
                          f"{n_features}; use the same columns and preprocessing as in training")


__all__ = ["MODEL_FORMAT", "check_width", "load_weights", "read_model", "saved_share",
           "write_model"]
