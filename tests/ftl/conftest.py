"""FTL tests: one torch thread (the CI machine is small and shared; OpenMP spinning costs 5×)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
