"""A child process for tests/party/test_local.py: ``python -m tests.party.local_child ACTION ...``.

- ``exit CODE MESSAGE``: print MESSAGE, exit with CODE;
- ``sleep SECONDS``: print its pid, then sleep;
- ``listen PORT``: listen on 127.0.0.1:PORT after 0.3 s, then sleep (a router stand-in).
"""

from __future__ import annotations

import os
import socket
import sys
import time


def main(argv: list[str]) -> int:
    action = argv[0]
    if action == "exit":
        print(argv[2], flush=True)
        return int(argv[1])
    if action == "sleep":
        print(f"pid {os.getpid()}", flush=True)
        time.sleep(float(argv[1]))
        return 0
    if action == "listen":
        time.sleep(0.3)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(argv[1])))
        s.listen()
        print("listening", flush=True)
        time.sleep(60)
        return 0
    raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
