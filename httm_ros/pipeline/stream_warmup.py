"""Start-up warm-up of the streaming core's own stages (issue 14, "first window after the node's
start-up warm-up").

The model's warm-up forwards (:func:`httm_ros.httm.warmup.warm_up`) pay the model's one-time
costs, but not those of the stages after it: the first window of a stream then still pays the
first use of the alignment's float64 solvers, the filter, the unprojection and the map's
voxel update, and the second window the first overlap alignment. On an H100 at the node's
defaults that made the first window 1.93x the median window and the second 1.66x
(bench/results/stream/h100_s16_stream_node.json). :func:`warm_up_core` runs two windows (the
first and one aligned to it) of a scratch core built like the real one through every stage, and
throws it away: the real core's map, counters and tracking state are not touched.
"""

import logging
import time
from dataclasses import replace
from typing import Dict, Tuple

import numpy as np
import torch

from httm_ros.httm.warmup import warm_up_frames
from httm_ros.pipeline.stream import StreamingReconstructor
from httm_ros.pipeline.stream_config import StreamConfig

#: the scratch core's tracking transitions (e.g. LOST on synthetic frames) are not the node's
_SILENT = logging.getLogger("httm_ros.pipeline.stream_warmup.scratch")
_SILENT.disabled = True


def warm_up_core(predictor, config: StreamConfig, frame_hw: Tuple[int, int] = (480, 640)) -> Dict:
    """Two windows of a scratch :class:`StreamingReconstructor` (``config`` with every frame a
    keyframe and loop closure off) on synthetic video frames of ``frame_hw`` (H, W) ->
    {"windows", "accepted", "seconds"}. Exceptions propagate (the caller reports them). Meant for
    CUDA, where those first uses cost (kernel loading, solver handles); on CPU the model's own time
    dominates every window and the node skips it."""
    scratch = replace(config, keyframes=replace(config.keyframes, enabled=False),
                      loop_closure=replace(config.loop_closure, enabled=False))
    size, overlap = scratch.window.size, scratch.window.overlap
    video = warm_up_frames(2 * size - overlap, frame_hw, "cpu")[0]                # [S,3,H,W] in [0,1]
    frames = (video.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()  # [S,H,W,3] uint8
    core = StreamingReconstructor(predictor, scratch)
    core.tracker.log = _SILENT
    start = time.perf_counter()
    results = [r for frame in frames for r in core.push(np.ascontiguousarray(frame))] + core.flush()
    seconds = time.perf_counter() - start
    return {"windows": len(results), "accepted": sum(r.accepted for r in results), "seconds": round(seconds, 4)}
