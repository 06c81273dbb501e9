"""pytorchexample: A Flower / PyTorch app.

Flower's ``examples/quickstart-pytorch/pytorchexample/task.py`` (Apache-2.0) with its
dataset loader pointed at local data: CIFAR-10 from ``$TESSERA_DATA/cifar10`` when it
is there (:func:`hfl.datasets.load_cifar10`, md5-checked), else MNIST from
``data/mnist`` padded to 32x32 and repeated over 3 channels, so ``Net`` stays
Flower's 3x32x32 CNN. Partitions are IID slices, 80/20 train/test per partition as
in Flower's. ``$TESSERA_APP_LIMIT`` caps the rows each partition uses (smoke runs).
``Net``, ``train`` and ``test`` are Flower's, unchanged.
"""

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from hfl.datasets import find_cifar10, load_cifar10, load_mnist


class Net(nn.Module):
    """Model (simple CNN adapted from 'PyTorch: A 60 Minute Blitz')"""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class _Images(Dataset):
    """Batches as Flower's datasets give them: {"img": 3x32x32 float, "label": int}."""

    def __init__(self, x, y):
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y.astype(np.int64))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"img": self.x[i], "label": self.y[i]}


_cache = {}


def _data_root() -> Path:
    return Path(os.environ.get("TESSERA_DATA") or Path(__file__).resolve().parents[3] / "data")


def _raw():
    """(x_train, y_train, x_test, y_test, prep): the raw local images and their transform."""
    if "all" not in _cache:
        if find_cifar10() is not None:
            xtr, ytr, xte, yte = load_cifar10()

            def prep(x):
                return (x.astype(np.float32).transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5
        else:
            print("CIFAR-10 not found under $TESSERA_DATA/cifar10: using MNIST, padded to 3x32x32",
                  flush=True)
            xtr, ytr, xte, yte = load_mnist(_data_root() / "mnist")

            def prep(x):
                x = np.pad(x.astype(np.float32) / 255, ((0, 0), (2, 2), (2, 2)))
                return (np.repeat(x[:, None], 3, axis=1) - 0.5) / 0.5

        _cache["all"] = (xtr, ytr, xte, yte, prep)
    return _cache["all"]


def load_data(partition_id: int, num_partitions: int, batch_size: int):
    """Load this partition's data (IID slice of the training set), 80% train / 20% test."""
    xtr, ytr, _, _, prep = _raw()
    size = len(ytr) // num_partitions
    idx = np.arange(partition_id * size, (partition_id + 1) * size)
    limit = os.environ.get("TESSERA_APP_LIMIT")
    if limit:
        idx = idx[: int(limit)]
    idx = np.random.default_rng(42).permutation(idx)
    n_test = int(0.2 * len(idx))
    test_idx, train_idx = idx[:n_test], idx[n_test:]
    trainloader = DataLoader(_Images(prep(xtr[train_idx]), ytr[train_idx]), batch_size=batch_size,
                             shuffle=True)
    testloader = DataLoader(_Images(prep(xtr[test_idx]), ytr[test_idx]), batch_size=batch_size)
    return trainloader, testloader


def load_centralized_dataset():
    """Load test set and return dataloader."""
    _, _, xte, yte, prep = _raw()
    limit = os.environ.get("TESSERA_APP_LIMIT")
    if limit:
        xte, yte = xte[: 2 * int(limit)], yte[: 2 * int(limit)]
    return DataLoader(_Images(prep(xte), yte), batch_size=128)


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set."""
    net.to(device)  # move model to GPU if available
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for batch in trainloader:
            images = batch["img"].to(device)
            labels = batch["label"].to(device)
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    avg_trainloss = running_loss / (epochs * len(trainloader))
    return avg_trainloss


def test(net, testloader, device):
    """Validate the model on the test set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for batch in testloader:
            images = batch["img"].to(device)
            labels = batch["label"].to(device)
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
    accuracy = correct / len(testloader.dataset)
    loss = loss / len(testloader)
    return loss, accuracy
