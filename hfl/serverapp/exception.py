"""Flower's ServerApp strategy exceptions (``flwr.serverapp.exception``)."""

from __future__ import annotations

from party import TesseraError


class AppExitException(TesseraError):
    """A ServerApp cannot go on; ``exit_code`` says why (Flower's codes)."""

    exit_code = 1


class InconsistentMessageReplies(AppExitException):
    """The replies do not have the records and keys aggregation needs."""

    exit_code = 300

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AggregationError(AppExitException):
    """The aggregate cannot be computed (e.g. keys or shapes differ from the global model)."""

    exit_code = 301

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
