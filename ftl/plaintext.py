"""Plaintext FTL: the same model, batches and seeds as ``train_ftl``, in one process, no encryption.

This is the comparison mode (threats.md row 40): with ``taylor=True`` its loss
curve and model match the encrypted protocol up to CKKS error. ``taylor=False``
trains with the exact logistic loss (plaintext only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ftl.data import FloatArray, GuestData, HostData
from ftl.model import (
    CrossForGuest,
    CrossForHost,
    FtlParams,
    GuestModel,
    HostModel,
    epoch_batches,
    federated_loss,
    label_matrix,
    plain_cross,
    schedule,
    scores,
    source_rows,
)

log = logging.getLogger(__name__)


@dataclass
class PlainResult:
    """Both trained halves, and the loss of every step (L as defined in ``ftl.model``)."""

    guest: GuestModel
    host: HostModel
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)

    def predict(self, x_host: FloatArray) -> FloatArray:
        """Scores of B's rows (logits): (rows,) for binary labels (higher = more likely
        positive), (rows, C) one-vs-rest logits otherwise (argmax: the class)."""
        if self.guest.phi_final is None:
            raise RuntimeError("model not trained")
        return scores(self.host.represent(x_host), self.guest.phi_final)


def _exact_grads(guest: GuestModel, host: HostModel, gb: object, hb: object, xs: FloatArray,
                 ys: FloatArray, params: FtlParams) -> tuple[FloatArray, FloatArray, float]:
    """Gradients of the exact (non-Taylor) L1 + L2 w.r.t. W_A and W_B by autograd."""
    from ftl.model import GuestBatch, HostBatch

    assert isinstance(gb, GuestBatch) and isinstance(hb, HostBatch)
    with torch.no_grad():
        a_s = guest.net.features(torch.as_tensor(xs))
    wa = guest.net.weight().detach().requires_grad_(True)
    wb = host.net.weight().detach().requires_grad_(True)
    loss = federated_loss(wa, wb, a_s, torch.as_tensor(ys), torch.as_tensor(gb.a_c),
                          torch.as_tensor(gb.yc), torch.as_tensor(hb.b),
                          gamma=params.alignment, taylor=False)
    ga, gbw = torch.autograd.grad(loss, [wa, wb])
    return ga.numpy(), gbw.numpy(), float(loss.detach())


def train_plaintext(guest: GuestData, host: HostData, params: FtlParams, *,
                    on_step: Callable[[int, int, float], None] | None = None) -> PlainResult:
    """Train FTL without encryption; same seeds and batches as the protocol.

    Args:
        guest: A's rows, labels and overlap rows (PSI order).
        host: B's rows and overlap rows (same order as ``guest.overlap``).
        params: model and training parameters.
        on_step: called as ``on_step(epoch, step, loss)`` after each step.

    Returns:
        Both models (A's with ``phi_final`` set) and the loss of each step.
    """
    if guest.overlap.size != host.overlap.size:
        raise ValueError(
            f"overlap sizes differ: guest lists {guest.overlap.size} rows, host "
            f"{host.overlap.size}; both must come from the same alignment"
        )
    gm = GuestModel(guest.x.shape[1], params)
    hm = HostModel(host.x.shape[1], params)
    schedule(gm, guest.overlap.size)
    schedule(hm, host.overlap.size)
    ys_all = label_matrix(guest.y, params.n_classes)
    res = PlainResult(gm, hm)
    for epoch in range(params.epochs):
        losses = []
        for step, idx in enumerate(epoch_batches(guest.overlap.size, params, epoch)):
            src = source_rows(guest.x.shape[0], params, epoch, step)
            g_rows, h_rows = guest.overlap[idx], host.overlap[idx]
            gb = gm.begin(guest.x[src], ys_all[src], guest.x[g_rows], ys_all[g_rows])
            hb = hm.begin(host.x[h_rows])
            if params.taylor:
                cg, ch = plain_cross(gb, hb, gm, hm)
                grad_a, fed_loss = gm.grad(gb, cg)
                grad_b = hm.grad(hb, ch)
            else:
                grad_a, grad_b, fed_loss = _exact_grads(gm, hm, gb, hb, guest.x[src],
                                                        ys_all[src], params)
            loss = (fed_loss + params.source_weight * gb.src_loss_value
                    + 0.5 * params.l2 * (gm.reg() + hm.reg()))
            gm.apply(gb, grad_a)
            hm.apply(grad_b)
            losses.append(loss)
            res.step_losses.append(loss)
            if on_step is not None:
                on_step(epoch, step, loss)
        res.epoch_losses.append(float(np.mean(losses)))
        log.info("ftl plaintext epoch %d loss %.5f", epoch, res.epoch_losses[-1])
    gm.compute_phi(guest.x, ys_all)
    return res


__all__ = ["CrossForGuest", "CrossForHost", "PlainResult", "train_plaintext"]
