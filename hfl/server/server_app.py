"""Flower's ``ServerApp`` and ``ServerAppComponents`` (``flwr.serverapp`` / ``flwr.server``).

Two styles, as in Flower 1.42:

- the Message API: ``app = ServerApp()`` and ``@app.main()`` on ``main(grid, context)``,
  which typically calls ``strategy.start(grid=grid, ...)``;
- the legacy API: ``ServerApp(server_fn=server_fn)`` where ``server_fn(context)``
  returns :class:`ServerAppComponents` (a legacy strategy and a ``ServerConfig``).

``python -m hfl run APP_DIR`` runs either (see :mod:`hfl.run`). Called directly,
``app(grid, context)`` runs a legacy app's strategy over the grid's nodes through
:class:`GridClientProxy` handles (each instruction a Message to a
``ClientApp(client_fn=...)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hfl import common
from hfl.clientapp import handle_legacy_message
from hfl.common.message import Context, Message, MessageType
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.record import ArrayRecord, ConfigRecord, RecordDict
from hfl.common.typing import OK
from hfl.server.client_proxy import ClientProxy
from hfl.server.grid import Grid
from party import TesseraError


@dataclass
class ServerAppComponents:
    """What a legacy ``server_fn(context)`` returns."""

    server: Any = None
    config: Any = None
    strategy: Any = None
    client_manager: Any = None


ServerFn = Callable[[Context], ServerAppComponents]
ServerAppCallable = Callable[[Grid, Context], None]


@contextmanager
def _empty_lifespan(context: Context) -> Iterator[None]:
    yield


class ServerApp:
    """Flower's ServerApp: a ``@app.main()`` function, or a legacy ``server_fn``."""

    def __init__(self, server: Any = None, config: Any = None, strategy: Any = None,
                 client_manager: Any = None, server_fn: ServerFn | None = None) -> None:
        if any([server, config, strategy, client_manager]) and server_fn:
            raise ValueError("Passing `server_fn` is incompatible with passing the other arguments "
                             "(now deprecated) to ServerApp. Use `server_fn` exclusively.")
        self._server = server
        self._config = config
        self._strategy = strategy
        self._client_manager = client_manager
        self._server_fn = server_fn
        self._main: ServerAppCallable | None = None
        self._lifespan: Callable[[Context], Any] = _empty_lifespan

    @property
    def is_legacy(self) -> bool:
        """True for ``ServerApp(server_fn=...)`` (or the deprecated arguments), False with ``@main``."""
        return self._main is None

    def components(self, context: Context) -> ServerAppComponents:
        """The legacy app's server, config, strategy and client manager for this run."""
        if self._main is not None:
            raise ValueError("this ServerApp has a @main function, not legacy components")
        if self._server_fn is not None:
            comps = self._server_fn(context)
            if not isinstance(comps, ServerAppComponents):
                raise TypeError(f"server_fn returned {type(comps).__name__}, not ServerAppComponents")
            return comps
        return ServerAppComponents(self._server, self._config, self._strategy, self._client_manager)

    def __call__(self, grid: Grid, context: Context) -> None:
        with self._lifespan(context):
            if self._main is not None:
                self._main(grid, context)
                return
            _run_legacy_over_grid(self.components(context), grid)

    def main(self) -> Callable[[ServerAppCallable], ServerAppCallable]:
        """Register the ``main(grid, context)`` function of a Message-API app."""

        def main_decorator(main_fn: ServerAppCallable) -> ServerAppCallable:
            if self._server or self._config or self._strategy or self._client_manager or self._server_fn:
                raise ValueError("Use either a function decorated with @app.main() or server_fn "
                                 "(or the deprecated arguments), not both")
            if not list(inspect.signature(main_fn).parameters):
                raise TypeError("@app.main() function must take (grid, context)")
            self._main = main_fn
            return main_fn

        return main_decorator

    def lifespan(self) -> Callable[[Callable[[Context], Iterator[None]]], Callable[[Context], Iterator[None]]]:
        """Register a generator run around the app (code before and after its one ``yield``)."""

        def deco(fn: Callable[[Context], Iterator[None]]) -> Callable[[Context], Iterator[None]]:
            @contextmanager
            def wrapped(context: Context) -> Iterator[None]:
                it = fn(context)
                try:
                    next(it)
                except StopIteration:
                    raise RuntimeError("lifespan function should yield at least once.") from None
                try:
                    yield
                finally:
                    try:
                        next(it)
                    except StopIteration:
                        pass
                    else:
                        raise RuntimeError("lifespan function should only yield once.")

            self._lifespan = wrapped
            return fn

        return deco


# -- the legacy API over a Grid (Flower's recorddict_compat keys) ---------------------------------
def fitins_to_message(ins: common.FitIns | common.EvaluateIns, dst: int, message_type: str) -> Message:
    """A legacy instruction as a Message (keys ``<ins>.parameters`` / ``<ins>.config``)."""
    prefix = "fitins" if message_type == MessageType.TRAIN else "evaluateins"
    content = RecordDict({f"{prefix}.parameters": ArrayRecord(parameters_to_ndarrays(ins.parameters)),
                          f"{prefix}.config": ConfigRecord(dict(ins.config))})
    return Message(content, dst, message_type)


class GridClientProxy(ClientProxy):
    """A legacy strategy's handle for one grid node: each call is one Message to it."""

    def __init__(self, grid: Grid, node_id: int) -> None:
        super().__init__(str(node_id))
        self.node_id = node_id
        self._grid = grid

    def _ask(self, msg: Message, timeout: float | None) -> RecordDict:
        (reply,) = list(self._grid.send_and_receive([msg], timeout=timeout))
        if reply.has_error():
            raise TesseraError(f"node {self.node_id}: {reply.error.reason}")
        return reply.content

    def get_properties(self, ins: common.GetPropertiesIns, timeout: float | None, group_id: int | None) -> common.GetPropertiesRes:
        return common.GetPropertiesRes(common.Status(common.Code.GET_PROPERTIES_NOT_IMPLEMENTED, "not over a grid"), {})

    def get_parameters(self, ins: common.GetParametersIns, timeout: float | None, group_id: int | None) -> common.GetParametersRes:
        msg = Message(RecordDict({"getparametersins.config": ConfigRecord(dict(ins.config))}),
                      self.node_id, MessageType.QUERY + ".get_parameters")
        content = self._ask(msg, timeout)
        return common.GetParametersRes(OK, ndarrays_to_parameters(
            content["getparametersres.parameters"].to_numpy_ndarrays()))

    def fit(self, ins: common.FitIns, timeout: float | None, group_id: int | None) -> common.FitRes:
        content = self._ask(fitins_to_message(ins, self.node_id, MessageType.TRAIN), timeout)
        m = dict(content["fitres.metrics"])
        n = int(m.pop("num-examples"))
        return common.FitRes(OK, ndarrays_to_parameters(content["fitres.parameters"].to_numpy_ndarrays()), n, m)

    def evaluate(self, ins: common.EvaluateIns, timeout: float | None, group_id: int | None) -> common.EvaluateRes:
        content = self._ask(fitins_to_message(ins, self.node_id, MessageType.EVALUATE), timeout)
        m = dict(content["evaluateres.metrics"])
        n = int(m.pop("num-examples"))
        loss = float(m.pop("loss"))
        return common.EvaluateRes(OK, loss, n, m)

    def reconnect(self, ins: common.ReconnectIns, timeout: float | None, group_id: int | None) -> common.DisconnectRes:
        return common.DisconnectRes(reason="UNKNOWN")


def _run_legacy_over_grid(comps: ServerAppComponents, grid: Grid) -> Any:
    from hfl.server.client_manager import SimpleClientManager
    from hfl.server.server import Server
    from hfl.server.server_config import ServerConfig

    if comps.server is not None:
        raise ValueError("ServerAppComponents(server=...) is not supported: pass strategy= and config=")
    cm = comps.client_manager or SimpleClientManager()
    for nid in grid.get_node_ids():
        cm.register(GridClientProxy(grid, nid))
    server = Server(client_manager=cm, strategy=comps.strategy)
    config = comps.config or ServerConfig()
    out: Any = server.fit(num_rounds=config.num_rounds, timeout=config.round_timeout)
    return out[0]  # Flower's (history, elapsed)


__all__ = ["GridClientProxy", "ServerApp", "ServerAppComponents", "fitins_to_message",
           "handle_legacy_message"]
