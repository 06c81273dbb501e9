"""Gradient check of the FTL decomposition against autograd (plaintext, no HE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftl.model import (
    GuestModel,
    HostModel,
    federated_loss,
    l1_value,
    plain_cross,
    signed,
)
from ftl.plaintext import train_plaintext
from party.errors import ConfigError
from tests.ftl.helpers import small_params, toy


def _batches(seed: int = 0):
    t = toy(seed=seed)
    p = small_params(alignment=0.7, guest_hidden=(6,), host_hidden=(3,))
    gm, hm = GuestModel(5, p), HostModel(4, p)
    ys = signed(t.guest.y)
    # move away from the initial point so that every term is non-trivial
    with torch.no_grad():
        for q in [*gm.net.parameters(), *hm.net.parameters()]:
            q.add_(0.3 * torch.randn(q.shape, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(q.numel())))
    src = np.arange(100)
    idx = np.arange(25)
    gb = gm.begin(t.guest.x[src], ys[src], t.guest.x[t.guest.overlap[idx]],
                  ys[t.guest.overlap[idx]])
    hb = hm.begin(t.host.x[t.host.overlap[idx]])
    return t, p, gm, hm, gb, hb, src


def test_representation_layer_gradients_match_autograd() -> None:
    t, p, gm, hm, gb, hb, src = _batches()
    cg, ch = plain_cross(gb, hb, gm, hm)
    grad_a, loss_manual = gm.grad(gb, cg)
    grad_b = hm.grad(hb, ch)

    a_s = gm.net.features(torch.as_tensor(t.guest.x[src])).detach()
    wa = gm.net.weight().detach().clone().requires_grad_(True)
    wb = hm.net.weight().detach().clone().requires_grad_(True)
    loss = federated_loss(wa, wb, a_s, torch.as_tensor(signed(t.guest.y)[src]),
                          torch.as_tensor(gb.a_c), torch.as_tensor(gb.yc), torch.as_tensor(hb.b),
                          gamma=p.alignment, taylor=True)
    ga, gbw = torch.autograd.grad(loss, [wa, wb])
    np.testing.assert_allclose(grad_a, ga.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_b, gbw.numpy(), rtol=1e-10, atol=1e-12)
    assert loss_manual == pytest.approx(float(loss.detach()), rel=1e-12)
    assert np.abs(grad_a).max() > 1e-3 and np.abs(grad_b).max() > 1e-3


def test_full_step_gradient_matches_autograd_of_whole_loss() -> None:
    """The surrogate step (local loss + ⟨G, W⟩) gives the gradient of the whole loss."""
    t, p, gm, hm, gb, hb, src = _batches(seed=1)
    cg, _ = plain_cross(gb, hb, gm, hm)
    grad_a, _ = gm.grad(gb, cg)
    gm.opt.zero_grad()
    (gb.src_loss + 0.5 * p.l2 * gm.reg_tensor() + (gm.net.weight() * torch.as_tensor(grad_a)).sum()
     ).backward()
    got = [q.grad.clone() for q in gm.net.parameters()]

    gm.opt.zero_grad()
    x_s = torch.as_tensor(t.guest.x[src])
    ys = torch.as_tensor(signed(t.guest.y)[src])
    w = gm.net.weight()
    a_s = gm.net.features(x_s)
    phi = (ys[:, None] * (a_s @ w.T)).mean(0)
    src_loss = torch.nn.functional.softplus(-ys * ((a_s @ w.T) @ phi)).mean()
    fed = federated_loss(w, torch.as_tensor(hm.net.weight().detach()), a_s.detach(), ys,
                         torch.as_tensor(gb.a_c), torch.as_tensor(gb.yc), torch.as_tensor(hb.b),
                         gamma=p.alignment, taylor=True)
    (fed + p.source_weight * src_loss + 0.5 * p.l2 * gm.reg_tensor()).backward()
    for g1, q in zip(got, gm.net.parameters(), strict=True):
        np.testing.assert_allclose(g1.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_taylor_loss_is_second_order_expansion() -> None:
    phi = torch.linspace(-0.3, 0.3, 13, dtype=torch.float64)
    for y in (1.0, -1.0):
        yt = torch.full_like(phi, y)
        exact = l1_value(phi, yt, taylor=False)
        approx = l1_value(phi, yt, taylor=True)
        assert abs(float(exact - approx)) < 1e-3  # error O(φ⁴)


def test_plaintext_training_lowers_loss_and_transfers() -> None:
    t = toy(n_guest=400, n_host=200, n_overlap=60)
    res = train_plaintext(t.guest, t.host, small_params(epochs=30, batch_size=30))
    assert res.epoch_losses[-1] < res.epoch_losses[0]
    from sklearn.metrics import roc_auc_score

    mask = np.ones(len(t.host_y), bool)
    mask[t.host.overlap] = False
    auc = roc_auc_score(t.host_y[mask], res.predict(t.host.x[mask]))
    assert auc > 0.8  # B scores customers A never saw


def test_plaintext_exact_logistic_mode_runs() -> None:
    t = toy()
    res = train_plaintext(t.guest, t.host, small_params(taylor=False, epochs=3))
    assert np.isfinite(res.epoch_losses).all() and res.epoch_losses[-1] < res.epoch_losses[0]


def test_bad_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="binary"):
        signed(np.array([0.0, 1.0, 2.0]))


def test_learning_rate_decays_linearly_to_zero() -> None:
    """FtlParams.lr_decay: step t moves by lr·(1 − t/total) (Adam with a constant gradient)."""
    from ftl.model import Adam, epoch_batches, schedule

    w = torch.zeros(1, dtype=torch.float64)
    opt = Adam([w], lr=0.1)
    opt.total_steps = 4
    moves = []
    for _ in range(5):
        before = float(w)
        w.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        moves.append(before - float(w))
    np.testing.assert_allclose(moves, [0.1, 0.075, 0.05, 0.025, 0.0], rtol=1e-6, atol=1e-9)

    p = small_params(epochs=3, batch_size=20)
    gm = GuestModel(5, p)
    schedule(gm, 45)
    assert gm.opt.total_steps == 3 * len(epoch_batches(45, p, 0)) == 6
    schedule(gm, 0)
    assert gm.opt.total_steps is None
    gm2 = GuestModel(5, small_params(lr_decay=False))
    schedule(gm2, 45)
    assert gm2.opt.total_steps is None
