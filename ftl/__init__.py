"""Federated transfer learning (Liu et al., arXiv:1812.03337) over CKKS.

A (the guest) holds labelled rows, B (the host) holds rows with other features
and no labels; a few customers are in both (found with PSI, ``vfl.align``).
``train_ftl`` trains both parties' representation networks as a protocol over
``party.Party`` (cross-party terms as B's ciphertexts × A's plaintexts under B's
CKKS key, with masks; each party has its own key pair); ``predict_ftl`` scores B's
rows (under A's key); ``train_plaintext`` trains the same model with the same seeds
in one process, for comparison. Binary labels, or C > 2 classes one-vs-rest
(``FtlParams.n_classes``). See ``ftl.protocol`` for the steps and what each party
learns.
"""

from __future__ import annotations

from ftl.data import GuestData, HostData, preprocess, split_credit
from ftl.model import FtlParams, GuestModel, HostModel
from ftl.plaintext import PlainResult, train_plaintext
from ftl.protocol import FtlGuest, FtlHost
from ftl.trainer import FtlResult, predict_ftl, train_ftl

__all__ = [
    "FtlGuest",
    "FtlHost",
    "FtlParams",
    "FtlResult",
    "GuestData",
    "GuestModel",
    "HostData",
    "HostModel",
    "PlainResult",
    "predict_ftl",
    "preprocess",
    "split_credit",
    "train_ftl",
    "train_plaintext",
]
