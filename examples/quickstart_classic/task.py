"""The model, the data and the training loop of the classic quick start (framework-neutral).

Flower's classic PyTorch quick start trains a small CNN on CIFAR-10 downloaded by
torchvision. Here the same CNN (for 1×28×28 inputs) trains on the offline MNIST copy in
``data/mnist`` (or ``$TESSERA_DATA/mnist``): each client draws its own random 2,000
training images, and tests on 1,000 test images. No download, no torchvision.
"""

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

DEVICE = torch.device("cpu")
torch.set_num_threads(1)  # three processes share a small machine


class Net(nn.Module):
    """Flower's quick-start CNN, for 1×28×28 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def train(net, trainloader, epochs):
    """Train the model on the training set."""
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            criterion(net(images.to(DEVICE)), labels.to(DEVICE)).backward()
            optimizer.step()


def test(net, testloader):
    """Validate the model on the test set."""
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for images, labels in testloader:
            outputs = net(images.to(DEVICE))
            labels = labels.to(DEVICE)
            loss += criterion(outputs, labels).item()
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
    accuracy = correct / len(testloader.dataset)
    return loss, accuracy


def _idx(path):
    raw = gzip.decompress(Path(path).read_bytes())
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data(n_train=2000, n_test=1000):
    """A random share of MNIST's training images for this client, and test images."""
    root = Path(os.environ.get("TESSERA_DATA") or Path(__file__).resolve().parents[2] / "data")
    d = root / "mnist"
    x_train, y_train = _idx(d / "train-images-idx3-ubyte.gz"), _idx(d / "train-labels-idx1-ubyte.gz")
    x_test, y_test = _idx(d / "t10k-images-idx3-ubyte.gz"), _idx(d / "t10k-labels-idx1-ubyte.gz")
    pick = np.random.default_rng().choice(len(x_train), n_train, replace=False)

    def loader(x, y, shuffle):
        images = torch.tensor((x / 255.0 - 0.1307) / 0.3081, dtype=torch.float32).unsqueeze(1)
        return DataLoader(TensorDataset(images, torch.tensor(y, dtype=torch.long)),
                          batch_size=32, shuffle=shuffle)

    return loader(x_train[pick], y_train[pick], True), loader(x_test[:n_test], y_test[:n_test], False)
