import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# run_tests.sh runs the suite on pytest-xdist workers: the cores are shared out among them, and
# the processes a test starts (torchrun, the pipeline, the benchmarks) get the same share
_threads = max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(_threads)
torch.set_num_threads(_threads)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """A test run must never download: any socket connection attempt fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
