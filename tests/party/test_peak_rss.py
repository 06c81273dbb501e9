"""party.files.peak_rss_mb: a child's own peak, not its parent's size carried over exec."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from party.files import peak_rss_mb


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc")
def test_a_child_of_a_large_parent_reports_its_own_peak() -> None:
    big = bytearray(300 << 20)  # 300 MB, touched
    big[:: 4096] = b"\x01" * len(big[:: 4096])
    code = "from party.files import peak_rss_mb; import resource; print(peak_rss_mb(), " \
           "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    own, inherited = map(float, out.stdout.split())
    assert inherited > 300  # what ru_maxrss says: the parent's size
    assert own < 250  # the child's own peak
    del big
    assert peak_rss_mb() > 300
    assert peak_rss_mb(2**31 - 1) == 0.0  # a process that does not exist
