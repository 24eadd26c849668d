"""Shared test fixtures, and the test session's Triton mode."""

import os

import pytest
import torch

# Without CUDA the Triton kernels run in Triton's interpreter, which must be chosen before anything
# imports triton: some test modules import code that imports it (torch's FLOP counter, inductor)
# while pytest collects them, before test_kernels_ops would set it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread: the CI machine has 2 shared cores, and for the
    small tensors of these tests torch's multi-threading only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_dynamo():
    """A clean torch.compile state for a test of the compiled token-wise passes: dynamo's caches and
    counters reset, and the passes' default backend (inductor) restored afterwards."""
    from torch._dynamo.utils import counters

    from httm_ros.vggt import layers

    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()
    layers.set_compile_backend("inductor")
