"""A rank failing in the middle of a sharded forward: every process exits non-zero with a clear
error, within the collective timeout (no hang), and the launcher names the failed rank."""

from __future__ import annotations

import os
import time

import pytest
import torch

from httm_ros.distributed import DistributedError, launch, shard_frames
from httm_ros.distributed.sharded_forward import sharded_attention
from httm_ros.httm.patch import global_attentions
from httm_ros.vggt.config import VGGTConfig
from httm_ros.vggt.factory import build_model

FAIL_RANK, FAIL_LAYER = 1, 2
TIMEOUT_S = 60.0


class FailingCore:
    """Stands in for layer FAIL_LAYER's global attention core on FAIL_RANK: raises, or ends the
    process at once (``how="exit"``: a crash that leaves no report)."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __call__(self, q, k, v, layout):
        if self.how == "exit":
            os._exit(3)
        raise RuntimeError(f"injected failure in global layer {FAIL_LAYER}")


def failing_rank(ctx, frames: int, how: str):
    """Rank function: the aggregator of a sharded dense forward; FAIL_RANK raises in FAIL_LAYER."""
    model = build_model(VGGTConfig.preset("tiny"), allow_test_weights=True, device="cpu")
    images = torch.rand(1, frames, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    shard = shard_frames(frames, ctx.world)[ctx.rank]
    with sharded_attention(model, None), torch.inference_mode():
        if ctx.rank == FAIL_RANK:
            attn = global_attentions(model)[FAIL_LAYER]
            attn.core = FailingCore(how)
        model.aggregator(images[:, shard.start:shard.stop], frame_offset=shard.start, total_frames=shard.total)
    return "finished"


def run_failing(world: int, how: str):
    start = time.monotonic()
    with pytest.raises(DistributedError) as info:
        launch(failing_rank, world, "cpu", args=(6, how), timeout_s=TIMEOUT_S, grace_s=5)
    assert time.monotonic() - start < TIMEOUT_S + 5 + 30                  # no hang beyond the timeout
    messages = info.value.messages
    assert all(m is not None for m in messages), messages                 # every rank exited non-zero
    return info.value, messages


def test_a_failing_rank_stops_every_rank_with_a_clear_error():
    error, messages = run_failing(3, "raise")
    assert "injected failure" in messages[FAIL_RANK]
    for r, m in enumerate(messages):
        if r != FAIL_RANK:
            assert f"rank {FAIL_RANK}" in m and "injected failure" in m, m  # names the root cause
    assert f"rank {FAIL_RANK}: RuntimeError: injected failure" in str(error)


def test_a_crashed_rank_stops_every_rank():
    _, messages = run_failing(2, "exit")
    assert "exit code 3" in messages[FAIL_RANK]
    other = messages[1 - FAIL_RANK]
    assert "Error" in other                                               # its own collective error
