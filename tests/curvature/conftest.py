"""Curvature tests run their tiny float64 models on one intra-op thread (autouse)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """These models are tiny: one intra-op thread is fastest, and on a shared, oversubscribed machine
    OpenMP's spinning threads make two threads ~10x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
