"""Flower's ``Criterion``: which clients ``ClientManager.sample`` may choose."""

from __future__ import annotations

from abc import ABC, abstractmethod

from hfl.server.client_proxy import ClientProxy


class Criterion(ABC):
    """Abstract class which allows subclasses to implement criterion sampling."""

    @abstractmethod
    def select(self, client: ClientProxy) -> bool:
        """Decide whether a client should be eligible for sampling or not."""
