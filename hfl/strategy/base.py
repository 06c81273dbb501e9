"""``hfl.strategy.base``: kept for imports written before ``hfl.server.strategy`` existed."""

from hfl.server.strategy.strategy import Strategy

__all__ = ["Strategy"]
