"""Flower's ``ClientManager`` and ``SimpleClientManager``: the clients a strategy samples from.

``SimpleClientManager`` behaves as Flower's (``random.sample``; an empty list when
fewer clients than asked are available). The server's own manager,
:class:`hfl.server.server.PartyClientManager`, samples with a generator seeded by
``(seed, round)`` so a resumed server chooses the same clients.
"""

from __future__ import annotations

import logging
import random
import threading
from abc import ABC, abstractmethod

from hfl.server.client_proxy import ClientProxy
from hfl.server.criterion import Criterion

log = logging.getLogger("hfl.server")


def eligible(clients: dict[str, ClientProxy], cids: list[str], criterion: Criterion | None,
             num_clients: int, level: int) -> list[str] | None:
    """The ``cids`` that ``criterion`` selects; None, logged at ``level``, if fewer than ``num_clients``."""
    if criterion is not None:
        cids = [cid for cid in cids if criterion.select(clients[cid])]
    if num_clients > len(cids):
        log.log(level, "Sampling failed: number of available clients (%s) is less than number of "
                "requested clients (%s).", len(cids), num_clients)
        return None
    return cids


class ClientManager(ABC):
    """Abstract base class for managing Flower clients."""

    @abstractmethod
    def num_available(self) -> int:
        """Return the number of available clients."""

    @abstractmethod
    def register(self, client: ClientProxy) -> bool:
        """Register a client; False when its cid is already registered."""

    @abstractmethod
    def unregister(self, client: ClientProxy) -> None:
        """Unregister a client."""

    @abstractmethod
    def all(self) -> dict[str, ClientProxy]:
        """Return all available clients, by cid."""

    @abstractmethod
    def wait_for(self, num_clients: int, timeout: int) -> bool:
        """Wait until at least ``num_clients`` are available (False on timeout)."""

    @abstractmethod
    def sample(self, num_clients: int, min_num_clients: int | None = None,
               criterion: Criterion | None = None) -> list[ClientProxy]:
        """Sample a number of client proxies."""


class SimpleClientManager(ClientManager):
    """Provides a pool of available clients (Flower's)."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientProxy] = {}
        self._cv = threading.Condition()

    def __len__(self) -> int:
        return len(self.clients)

    def num_available(self) -> int:
        return len(self)

    def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: len(self.clients) >= num_clients, timeout=timeout)

    def register(self, client: ClientProxy) -> bool:
        if client.cid in self.clients:
            return False
        self.clients[client.cid] = client
        with self._cv:
            self._cv.notify_all()
        return True

    def unregister(self, client: ClientProxy) -> None:
        if client.cid in self.clients:
            del self.clients[client.cid]
            with self._cv:
                self._cv.notify_all()

    def all(self) -> dict[str, ClientProxy]:
        return self.clients

    def sample(self, num_clients: int, min_num_clients: int | None = None,
               criterion: Criterion | None = None) -> list[ClientProxy]:
        if min_num_clients is None:
            min_num_clients = num_clients
        self.wait_for(min_num_clients)
        available_cids = eligible(self.clients, list(self.clients), criterion, num_clients, logging.INFO)
        if available_cids is None:
            return []
        sampled_cids = random.sample(available_cids, num_clients)
        return [self.clients[cid] for cid in sampled_cids]
