"""``hfl.serverapp.grid``: the same Grid classes as :mod:`hfl.server.grid` (Flower: ``flwr.serverapp.Grid``)."""

from hfl.server.grid import Grid, InMemoryGrid, PartyGrid

__all__ = ["Grid", "InMemoryGrid", "PartyGrid"]
