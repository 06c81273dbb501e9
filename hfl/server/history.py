"""Flower's ``flwr.server.history``: the same class as :class:`hfl.history.History`."""

from hfl.history import History

__all__ = ["History"]
