"""The main demo (`make demo`). Until the vertical-FL pipeline lands it runs the transport demo."""

from __future__ import annotations

import sys

from examples.transport_demo.run_local import main

if __name__ == "__main__":
    sys.exit(main())
