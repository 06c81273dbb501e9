"""Shared fixtures: the data directory and helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TESSERA_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or $TESSERA_DATA): the offline data sets."""
    if not DATA_DIR.is_dir():
        pytest.fail(f"data directory {DATA_DIR} not found; set TESSERA_DATA")
    return DATA_DIR
