"""Placeholder demo until the gRPC transport lands (replaced in the same issue)."""

from party import InMemoryNetwork, Party, Tag

if __name__ == "__main__":
    net = InMemoryNetwork(["bank", "fintech"])
    bank, fintech = (Party(n, net.transport(n)) for n in ("bank", "fintech"))
    bank.send("fintech", Tag("demo"), {"hello": "fintech"})
    print(fintech.recv("bank", Tag("demo"), timeout_s=1))
