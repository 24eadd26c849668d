"""The sharded HTTM core on the Triton fast path (``httm_attention_fast(..., shard=)``), run on
the CPU in Triton's interpreter (TRITON_INTERPRET=1, set before anything imports triton; the
spawned processes inherit it): 2 gloo processes against the one-process Triton forward, global
outlier budget, within 1% of the merging error (as the torch path in test_distributed_forward)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from httm_ros.distributed import gather_outputs, launch, shard_frames, sharded_forward  # noqa: E402
from httm_ros.httm import HTTMConfig, patch  # noqa: E402
from httm_ros.httm.kernels import triton_usable  # noqa: E402
from httm_ros.httm.records import MergeStats  # noqa: E402
from test_distributed_forward import HEADS, OUTPUTS, rel, tiny_case  # noqa: E402

MERGE = HTTMConfig(spatial_block=8, temporal_frames=2, impl="triton")
FRAMES = 7

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" or triton_usable(torch.device("cpu")) is not None,
                                reason="needs Triton's interpreter on the CPU")


def triton_rank(ctx):
    model, images = tiny_case(FRAMES)
    shard = shard_frames(FRAMES, ctx.world, MERGE.temporal_frames)[ctx.rank]
    stats = MergeStats()
    with torch.inference_mode():
        full = gather_outputs(sharded_forward(model, images[shard.start:shard.stop], shard, MERGE, HEADS,
                                              stats=stats))
    return full, sorted({r.impl for r in stats.records}), int(sum(r.outliers.sum() for r in stats.records))


def test_sharded_triton_path_matches_one_process_triton():
    model, images = tiny_case(FRAMES)
    with torch.inference_mode():
        dense = model(images, heads=HEADS)
        stats = patch(model, MERGE)
        one = model(images, heads=HEADS)
    assert {r.impl for r in stats.records} == {"triton"}
    ranks = launch(triton_rank, 2, "cpu", timeout_s=300)
    full, impls, _ = ranks[0]
    assert impls == ["triton-sharded"]
    assert sum(r[2] for r in ranks) == int(sum(r.outliers.sum() for r in stats.records))  # the global budget
    for key in OUTPUTS:
        assert rel(full[key], one[key]) < 0.01 * rel(one[key], dense[key]), key
