"""Shared fixtures: the data directory and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from party.files import data_dir as _data_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline data sets (``$TESSERA_DATA``, the repository's ``data/``, or ``../shared/data``)."""
    try:
        return _data_dir()
    except FileNotFoundError as e:
        pytest.fail(str(e))
