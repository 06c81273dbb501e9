"""Model, data and training of Flower's PyTorch quick start ("PyTorch: A 60 Minute Blitz" CNN).

CIFAR-10 is read from ``$TESSERA_DATA/cifar10/`` (or ``--cifar10 PATH``) in either
official form, md5-checked (:func:`hfl.datasets.load_cifar10`): put
``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz`` there (read in place), or
``cifar-10-batches-py/`` extracted. With it the quick start's 3×32×32 CNN runs as is.
Without it the tutorial says so and falls back to MNIST from ``data/mnist``: the CNN
then takes 1×28×28 inputs (conv(1→6, 5) instead of conv(3→6, 5), and 16·4·4 instead
of 16·5·5 inputs to the first fully connected layer). Everything else is as in the
quick start.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hfl.datasets import cifar10_root, find_cifar10, load_cifar10, load_mnist
from party.files import data_dir

MNIST_DIR = data_dir() / "mnist"


class Net(nn.Module):
    """The quick start's CNN; ``channels``/``side`` adapt it to MNIST (1, 28) or CIFAR (3, 32)."""

    def __init__(self, channels: int = 3, side: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        flat = ((side - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * flat * flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


Data = tuple[torch.Tensor, torch.Tensor]


def choose_cifar10(cifar10: str | None = None) -> str | None:
    """Where CIFAR-10 will be read from, or None (after saying so) for the MNIST fallback."""
    if cifar10:
        return cifar10
    if find_cifar10(cifar10_root()) is not None:
        return str(cifar10_root())
    print(f"CIFAR-10 not found in {cifar10_root()} (put cifar-10-binary.tar.gz or "
          "cifar-10-python.tar.gz there, or pass --cifar10 PATH): falling back to MNIST, "
          "with the CNN adjusted to 1x28x28", flush=True)
    return None


def load_data(partition_id: int, num_partitions: int, *, cifar10: str | None = None,
              limit: int | None = None, md5: Mapping[str, str] | None = None,
              ) -> tuple[Data, Data, str]:
    """This client's share of the training set and of the test set, and the data set's name.

    ``cifar10``: where CIFAR-10 is (default ``$TESSERA_DATA/cifar10``). Given explicitly,
    it must be there; by default its absence means MNIST, said on stdout. A copy that is
    there but fails its md5 check is an error, never a silent fallback.
    """
    cifar10 = choose_cifar10(cifar10)
    if cifar10:
        xtr, ytr, xte, yte = load_cifar10(cifar10, md5=md5)
        name = "CIFAR-10"
        mean, std = np.float32(0.5), np.float32(0.5)

        def to_t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((x.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2).copy())
    else:
        xtr, ytr, xte, yte = load_mnist(MNIST_DIR)
        name = "MNIST (CIFAR-10 not given: CNN adjusted to 1x28x28)"

        def to_t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy((x.astype(np.float32) / 255 - 0.5) / 0.5).unsqueeze(1)

    def part(n: int) -> slice:
        size = n // num_partitions
        end = (partition_id + 1) * size
        if limit is not None:
            end = min(end, partition_id * size + limit)
        return slice(partition_id * size, end)

    tr, te = part(len(ytr)), part(len(yte))
    train = (to_t(xtr[tr]), torch.from_numpy(ytr[tr]).long())
    test_ = (to_t(xte[te]), torch.from_numpy(yte[te]).long())
    return train, test_, name


def make_net(dataset: str) -> Net:
    return Net(3, 32) if dataset.startswith("CIFAR") else Net(1, 28)


def train(net: Net, data: Data, epochs: int, batch_size: int = 32, lr: float = 0.001) -> None:
    """SGD(lr=0.001, momentum=0.9), cross-entropy, as in the quick start (``--smoke``: lr 0.02)."""
    x, y = data
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            optimizer.zero_grad()
            criterion(net(x[idx]), y[idx]).backward()
            optimizer.step()


@torch.no_grad()
def test(net: Net, data: Data) -> tuple[float, float]:
    """(summed cross-entropy / batches as in the quick start, accuracy)."""
    x, y = data
    criterion = nn.CrossEntropyLoss()
    net.eval()
    loss, correct, batches = 0.0, 0, 0
    for i in range(0, len(y), 256):
        out = net(x[i:i + 256])
        loss += float(criterion(out, y[i:i + 256]))
        correct += int((out.argmax(1) == y[i:i + 256]).sum())
        batches += 1
    return loss / max(batches, 1), correct / len(y)
