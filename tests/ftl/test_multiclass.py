"""Multi-class FTL (one-vs-rest; FATE's FTL is binary-only): threats.md row 40 on a real data set.

FATE's vehicle silhouettes (4 classes) split for transfer: A has 500 customers with the
guest features and the labels, B 446 customers with the host features, 100 of them A's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ftl import FtlParams, GuestData, HostData, train_plaintext
from ftl.data import VEHICLE_GUEST, VEHICLE_HOST, overlap_by_ids, split_hetero
from ftl.model import (
    GuestModel,
    HostModel,
    federated_loss,
    label_matrix,
    plain_cross,
)
from ftl.protocol import FtlGuest, FtlHost
from he.params import CkksParams
from party.errors import ConfigError

#: small enough for a test, large enough that the model is far from its starting point
PARAMS = FtlParams(n_classes=4, dim=4, l2=0.001, lr=0.1, epochs=60, batch_size=32,
                   source_batch=256, timeout_s=60.0)


def _vehicle(data_dir: Path) -> tuple[GuestData, HostData, np.ndarray]:
    sp = split_hetero(data_dir / VEHICLE_GUEST, data_dir / VEHICLE_HOST, n_guest=500,
                      n_host=446, n_overlap=100, seed=0)
    g_ov, h_ov = overlap_by_ids(sp.guest["id"].tolist(), sp.host["id"].tolist())
    guest = GuestData(sp.guest[sp.guest_columns].to_numpy(dtype=np.float64),
                      sp.guest["y"].to_numpy(dtype=np.float64), g_ov)
    host = HostData(sp.host[sp.host_columns].to_numpy(dtype=np.float64), h_ov)
    return guest, host, sp.host_truth["y"].to_numpy()


def test_label_matrix_one_vs_rest() -> None:
    y = np.array([0.0, 3.0, 1.0, 3.0])
    m = label_matrix(y, 4)
    assert m.shape == (4, 4)
    np.testing.assert_array_equal(m.argmax(axis=1), [0, 3, 1, 3])
    assert set(np.unique(m)) == {-1.0, 1.0} and (m == 1).sum() == 4
    np.testing.assert_array_equal(label_matrix(np.array([0.0, 1.0]), 2), [[-1.0], [1.0]])
    with pytest.raises(ConfigError, match=r"0\.\.3"):
        label_matrix(np.array([0.0, 4.0]), 4)
    with pytest.raises(ConfigError, match="binary"):
        label_matrix(np.array([0.0, 2.0]), 2)


def test_multiclass_gradients_match_autograd(data_dir: Path) -> None:
    guest, host, _ = _vehicle(data_dir)
    p = FtlParams(n_classes=4, dim=3, alignment=0.4, guest_hidden=(5,), host_hidden=(4,))
    gm, hm = GuestModel(guest.x.shape[1], p), HostModel(host.x.shape[1], p)
    with torch.no_grad():
        for q in [*gm.net.parameters(), *hm.net.parameters()]:
            q.add_(0.3 * torch.randn(q.shape, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(q.numel())))
    ys = label_matrix(guest.y, 4)
    src, idx = np.arange(200), np.arange(40)
    gb = gm.begin(guest.x[src], ys[src], guest.x[guest.overlap[idx]], ys[guest.overlap[idx]])
    hb = hm.begin(host.x[host.overlap[idx]])
    assert gb.phi.shape == (4, 3) and gb.yc.shape == (40, 4)
    cg, ch = plain_cross(gb, hb, gm, hm)
    grad_a, loss_manual = gm.grad(gb, cg)
    grad_b = hm.grad(hb, ch)
    wa = gm.net.weight().detach().clone().requires_grad_(True)
    wb = hm.net.weight().detach().clone().requires_grad_(True)
    a_s = gm.net.features(torch.as_tensor(guest.x[src])).detach()
    loss = federated_loss(wa, wb, a_s, torch.as_tensor(ys[src]), torch.as_tensor(gb.a_c),
                          torch.as_tensor(gb.yc), torch.as_tensor(hb.b), gamma=p.alignment,
                          taylor=True)
    ga, gbw = torch.autograd.grad(loss, [wa, wb])
    np.testing.assert_allclose(grad_a, ga.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_b, gbw.numpy(), rtol=1e-10, atol=1e-12)
    assert loss_manual == pytest.approx(float(loss.detach()), rel=1e-12)
    assert np.abs(grad_a).max() > 1e-3 and np.abs(grad_b).max() > 1e-3


def test_multiclass_encrypted_and_plain_loss_curves_agree(data_dir: Path) -> None:
    """threats.md row 40, multi-class: the encrypted protocol and the plaintext mode give the
    same loss at every step and epoch (max difference asserted), the same model, and the
    same predictions for B's unseen rows (scored by the prediction protocol)."""
    guest, host, truth = _vehicle(data_dir)
    ckks = CkksParams()
    plain_steps: list[float] = []
    ref = train_plaintext(guest, host, PARAMS, on_step=lambda e, s, v: plain_steps.append(v))

    g = FtlGuest(guest, PARAMS, ckks=ckks, rng=np.random.default_rng(1))
    h = FtlHost(host, PARAMS, ckks=ckks, rng=np.random.default_rng(2))
    h.on_hello(g.hello())
    g.on_hello(h.hello())
    he_steps, he_epochs = [], []
    for e in range(PARAMS.epochs):
        losses = []
        for s in range(h.steps(e)):
            gf = g.on_host_forward(h.begin_step(e, s))
            losses.append(h.on_guest_backward(g.on_host_backward(h.on_guest_forward(gf))))
        he_steps += losses
        he_epochs.append(float(np.mean(losses)))
    assert len(he_steps) == len(plain_steps) == PARAMS.epochs * 3 == 180
    epoch_diff = np.abs(np.array(he_epochs) - np.array(ref.epoch_losses))
    step_diff = np.abs(np.array(he_steps) - np.array(plain_steps))
    assert epoch_diff.max() < 1e-5, epoch_diff   # max loss difference per epoch (row 40)
    assert step_diff.max() < 1e-5, step_diff
    assert ref.epoch_losses[-1] < ref.epoch_losses[0] - 0.5  # it did train
    np.testing.assert_allclose(g.model.net.weight().detach().numpy(),
                               ref.guest.net.weight().detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(h.model.net.weight().detach().numpy(),
                               ref.host.net.weight().detach().numpy(), atol=1e-5)

    g.finish()
    unseen = np.ones(len(truth), dtype=bool)
    unseen[host.overlap] = False
    req = h.predict_request(host.x)
    pred = h.on_predict_sums(g.on_predict_masked(h.on_enc_phi(g.on_predict_request(req))))
    plain_pred = ref.predict(host.x)
    assert pred.shape == plain_pred.shape == (len(truth), 4)
    np.testing.assert_allclose(pred, plain_pred, atol=1e-4)
    assert (pred.argmax(axis=1) == plain_pred.argmax(axis=1)).mean() > 0.99
    acc = float((pred.argmax(axis=1)[unseen] == truth[unseen]).mean())
    assert acc > 0.4, acc  # 4 balanced classes: chance is 0.25


def test_multiclass_labels_need_n_classes(data_dir: Path) -> None:
    guest, host, _ = _vehicle(data_dir)
    with pytest.raises(ConfigError, match="binary"):
        train_plaintext(guest, host, FtlParams(epochs=1))
    with pytest.raises(ConfigError, match="binary"):
        FtlGuest(guest, FtlParams(epochs=1))
    g = FtlGuest(guest, PARAMS)
    h = FtlHost(host, FtlParams(**{**PARAMS.as_dict(), "n_classes": 3,  # type: ignore[arg-type]
                                   "guest_hidden": PARAMS.guest_hidden,
                                   "host_hidden": PARAMS.host_hidden}))
    with pytest.raises(ConfigError, match="n_classes"):
        g.on_hello(h.hello())
