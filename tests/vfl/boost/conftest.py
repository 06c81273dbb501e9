"""Fixtures: one OU key pair for the whole session (key generation takes seconds)."""

from __future__ import annotations

import pytest

from vfl.boost.crypto import HeuCipher


@pytest.fixture(scope="session")
def ou() -> HeuCipher:
    return HeuCipher("ou", 2048)
