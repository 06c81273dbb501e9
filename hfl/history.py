"""Training history (Flower's ``History``: same fields and ``add_*(server_round=, ...)``).

tessera adds ``rounds`` (per-round timings, clients, failures), ``parameters`` (the
final model) and saving as JSON and PNG (non-finite numbers become null there).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfl.common import Metrics, NDArrays
from party import write_atomic


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.hex()
    return v


@dataclass
class History:
    """Per-round losses and metrics; ``parameters`` is the final global model."""

    losses_distributed: list[tuple[int, float]] = field(default_factory=list)
    losses_centralized: list[tuple[int, float]] = field(default_factory=list)
    metrics_distributed_fit: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    metrics_distributed: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    metrics_centralized: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    parameters: NDArrays | None = None

    @staticmethod
    def _add(d: dict[str, list[tuple[int, Any]]], server_round: int, metrics: Metrics) -> None:
        for k, v in metrics.items():
            d.setdefault(k, []).append((server_round, v))

    def add_loss_distributed(self, server_round: int, loss: float) -> None:
        self.losses_distributed.append((server_round, loss))

    def add_loss_centralized(self, server_round: int, loss: float) -> None:
        self.losses_centralized.append((server_round, loss))

    def add_metrics_distributed_fit(self, server_round: int, metrics: Metrics) -> None:
        self._add(self.metrics_distributed_fit, server_round, metrics)

    def add_metrics_distributed(self, server_round: int, metrics: Metrics) -> None:
        self._add(self.metrics_distributed, server_round, metrics)

    def add_metrics_centralized(self, server_round: int, metrics: Metrics) -> None:
        self._add(self.metrics_centralized, server_round, metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "losses_distributed": [[r, _num(v)] for r, v in self.losses_distributed],
            "losses_centralized": [[r, _num(v)] for r, v in self.losses_centralized],
            "metrics_distributed_fit": {k: [[r, _num(v)] for r, v in xs]
                                        for k, xs in self.metrics_distributed_fit.items()},
            "metrics_distributed": {k: [[r, _num(v)] for r, v in xs]
                                    for k, xs in self.metrics_distributed.items()},
            "metrics_centralized": {k: [[r, _num(v)] for r, v in xs]
                                    for k, xs in self.metrics_centralized.items()},
            "rounds": self.rounds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        def pairs(xs: list[list[Any]]) -> list[tuple[int, Any]]:
            return [(int(r), v) for r, v in xs]

        return cls(
            losses_distributed=pairs(d.get("losses_distributed", [])),
            losses_centralized=pairs(d.get("losses_centralized", [])),
            metrics_distributed_fit={k: pairs(v) for k, v in d.get("metrics_distributed_fit", {}).items()},
            metrics_distributed={k: pairs(v) for k, v in d.get("metrics_distributed", {}).items()},
            metrics_centralized={k: pairs(v) for k, v in d.get("metrics_centralized", {}).items()},
            rounds=list(d.get("rounds", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, directory: str | Path, *, plot: bool = True) -> None:
        """Write ``history.json`` and (with ``plot``) ``history.png``, each atomically."""
        d = Path(directory)
        write_atomic(d / "history.json", self.to_json())
        if plot:
            write_atomic(d / "history.png", self.plot_png())

    def plot_png(self) -> bytes:
        """Loss and accuracy-like metrics per round, as PNG bytes (matplotlib, Agg)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        eps = [(r, v) for r, v in self.metrics_distributed_fit.get("dp_epsilon", [])
               if isinstance(v, (int, float)) and math.isfinite(v)]
        fig = Figure(figsize=(15 if eps else 10, 4))
        axes = fig.subplots(1, 3 if eps else 2)
        ax_l, ax_m = axes[0], axes[1]
        if eps:  # differential privacy: the epsilon spent so far (hfl DP strategies, dp extra)
            ax_e = axes[2]
            ax_e.plot(*zip(*eps, strict=True), marker="o", color="tab:red", label="total ε")
            ax_e.set_xlabel("round")
            delta = self.metrics_distributed_fit.get("dp_delta", [(0, 1e-5)])[-1][1]
            ax_e.set_title(f"privacy spent (ε at δ = {delta:g})")
            ax_e.grid(alpha=0.3)
        for name, xs in (("distributed", self.losses_distributed),
                         ("centralized", self.losses_centralized)):
            pts = [(r, v) for r, v in xs if v is not None]
            if pts:
                ax_l.plot(*zip(*pts, strict=True), marker="o", label=f"loss ({name})")
        ax_l.set_xlabel("round")
        ax_l.set_ylabel("loss")
        ax_l.set_title("loss per round")
        for scope, md in (("distributed", self.metrics_distributed),
                          ("centralized", self.metrics_centralized),
                          ("fit", self.metrics_distributed_fit)):
            for k, xs in md.items():
                pts = [(r, v) for r, v in xs if isinstance(v, (int, float)) and not isinstance(v, bool)]
                if pts and ("acc" in k.lower() or scope != "fit") and not k.startswith("dp_"):
                    ax_m.plot(*zip(*pts, strict=True), marker="o", label=f"{k} ({scope})")
        ax_m.set_xlabel("round")
        ax_m.set_title("metrics per round")
        for ax in (ax_l, ax_m):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    def __repr__(self) -> str:
        last = self.rounds[-1] if self.rounds else {}
        return f"History(rounds={len(self.rounds)}, last={last})"
