"""Split-learning runners over :class:`party.Party`: ActiveTrainer and PassiveTrainer.

One active party (labels, its bottom model, the head) and one or more passive
parties (features, their bottom models) train ``logit = top(own(f_A(x_A)) + Σ_p f_p(x_p) W_p)``
on rows already aligned by PSI (``vfl.align``): row i is the same customer everywhere.

Modes (same model from the same seeds; :mod:`vfl.interactive` gives both one interface):

* ``he`` (default): the interactive layer ``h_p W_p`` runs on CKKS (:mod:`vfl.he.layer`);
  ``W_p`` is additively shared. *A learns ``z_p = h_p W_p`` per row and nothing else
  about P; P learns ``∂L/∂h_p`` per row (the label-leakage surface of all split
  learning; see ``grad_noise``) and nothing else about A.*
* ``plaintext``: P sends ``h_p`` in the clear and A holds ``W_p`` (comparison only:
  *A learns P's bottom outputs, which can reveal its features*).

The pieces: settings and errors (:mod:`vfl.config`); the plan/ack/resume and scoring
handshakes, a sans-I/O machine per role (:mod:`vfl.session`, whose docstring lists the
messages and what each party learns from them); the seeded schedules
(:mod:`vfl.schedule`: both parties derive the validation split and every epoch's
shuffling from the shared ``seed``, so no row order is ever exchanged); epoch
checkpoints (:mod:`vfl.checkpoints`: written atomically on both sides each epoch; a
run restarted after a crash of either party resumes from the newest epoch both have;
HE keys are never checkpointed, a resumed run makes fresh keys); the saved-half file
format (:mod:`vfl.model_file`); the runners (:mod:`vfl.active`, :mod:`vfl.passive`,
over :mod:`vfl.runner`) only move messages, apply deadlines and run the models. This
module is the public face: every name other code imports from ``vfl.trainer``.

Saved models and scoring later (``save_model`` / ``load_model``): after ``fit()`` the
active party draws a random ``run_id`` and sends it with the ``stop`` command; each
party's ``save_model`` writes only what it owns (its bottom model, the active party's
head, and in HE mode its own share ``W_A`` or ``W_P``, never the peer's share, the
momentum or any CKKS key), tagged with that ``run_id``, the mode, ``k``, ``d`` and its
feature count. ``ActiveTrainer.load_model`` / ``PassiveTrainer.load_model`` read such a
file in a new process and check it against the given model and config. The first
``predict()`` then opens a scoring session (:mod:`vfl.session`): P refuses halves of
another run (``ConfigError`` on both sides), and in HE mode both make *fresh* key pairs
and exchange public contexts; scoring is steps 1-3 of :mod:`vfl.he.layer` as after
``fit()``. *Each party learns the other's (public, random) run_id and d/k, and then
exactly what scoring after ``fit()`` reveals: A learns z_P = h_P W_P per scored row,
P learns nothing.*

Label-leakage defence (off by default): ``grad_noise = σ`` adds Gaussian noise of
standard deviation ``σ / batch_rows`` to every entry of ``∂L/∂h`` before P sees it
(``∂L/∂h`` of a mean loss is O(1/batch_rows) per row). It lowers the AUC of the
norm/direction label attacks (Li et al. 2021) at a cost in model AUC; the
benchmark reports both (``benchmarks/vfl.py``). It has no formal guarantee: P's gradient
also carries W_P, which A does not know in HE mode.

Label DP (``label_epsilon = ε``, off by default) is the calibrated version. A replaces
the loss gradient at the logit by ``g = (σ(logit) - y)/B + N(0, (z/B)²)`` and
back-propagates *that* (``logit.backward(g)``): its own updates and every value any
passive party receives (``∂L/∂h``, the masked ``hᵀδ``) are functions of the noised
``g``. Flipping one training label moves its row's ``g`` by exactly ``1/B`` and nothing
else in that epoch, and each label is used once per epoch, so ``E`` epochs are ``E``
Gaussian mechanisms with multiplier ``z``; ``z`` is the smallest one whose RDP ε after
``epochs`` epochs is within ``ε`` at ``label_delta`` (``dp.accounting``). *P's whole view
of training is (ε, δ)-label-DP for the training rows.* The noise comes from a secret of
A's, kept in A's checkpoint, so a redone epoch after a crash repeats the same noise
instead of releasing a second draw. Not covered: validation labels steer early stopping
(P sees how many epochs ran) and the saved model's scores are A's.
"""

from __future__ import annotations

from vfl.active import ActiveTrainer
from vfl.config import EventFn, TrainConfig, TrainingInterrupted, TrainResult
from vfl.interactive import msg_tag as _msg  # noqa: F401  (the old private name)
from vfl.model_file import MODEL_FORMAT
from vfl.passive import PassiveTrainer
from vfl.schedule import epoch_batches, split_rows
from vfl.session import id_digest

__all__ = [
    "MODEL_FORMAT",
    "ActiveTrainer",
    "EventFn",
    "PassiveTrainer",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "epoch_batches",
    "id_digest",
    "split_rows",
]
