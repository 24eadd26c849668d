"""A VGGT forward over frames split across ranks (``FrameShard``): what runs where.

Local on each rank (its frames only): the patch embedding, every frame block, the MLPs and
norms of the global blocks, the DPT heads (per frame). Across ranks: the global attention cores
(``sharded_attention``) and the camera head, whose trunk attends across all frames: the camera
tokens of the last block ([B, S_r, 2C], tiny) are all-gathered and every rank runs the camera
head on the whole sequence, then keeps its own frames' pose encodings.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from httm_ros.httm.patch import global_attentions
from httm_ros.httm.records import MergeStats
from httm_ros.httm.settings import HTTMConfig
from httm_ros.vggt.model import HEAD_NAMES

from .collectives import GatherLog, RowCounts, all_gather_rows
from .sharded_attention import ShardedDenseCore, ShardedHTTMCore
from .shards import FrameShard


@contextlib.contextmanager
def sharded_attention(model: nn.Module, merge: Optional[HTTMConfig], outliers: str = "global", group=None,
                      log: Optional[GatherLog] = None, stats: Optional[MergeStats] = None) -> Iterator[None]:
    """Install the sharded cores in every global attention (HTTM in ``merge.layers``, dense
    elsewhere) for the duration of the block; the model's own cores come back after it. One
    forward per installation: the ranks' row counts found in its first layer are reused."""
    if merge is not None and not isinstance(merge, HTTMConfig):
        raise TypeError(f"a sharded forward supports HTTMConfig or None (dense), got {type(merge).__name__}")
    attns = global_attentions(model)
    saved = [attn.core for attn in attns]
    layers = set(range(len(attns)) if merge is None or merge.layers is None else merge.layers)
    counts = RowCounts(group)                                             # row counts: once per forward
    try:
        for i, attn in enumerate(attns):
            if merge is not None and i in layers:
                attn.core = ShardedHTTMCore(merge, i, outliers, group, log, stats, counts)
            else:
                attn.core = ShardedDenseCore(i, group, log, counts)
        yield
    finally:
        for attn, core in zip(attns, saved):
            attn.core = core


def sharded_forward(model: nn.Module, images: Tensor, shard: FrameShard, merge: Optional[HTTMConfig] = None,
                    heads: Sequence[str] = ("camera", "depth"), outliers: str = "global", group=None,
                    log: Optional[GatherLog] = None, stats: Optional[MergeStats] = None) -> Dict[str, Tensor]:
    """This rank's part of ``model(all_images, heads)``: images [S_r, 3, H, W] or [B, S_r, 3, H, W]
    (frames shard.start..shard.stop) -> the same dict as ``VGGT.forward`` for these frames
    (pose_enc [B, S_r, 9], depth [B, S_r, H, W, 1], ...). Every rank must call it (collectives)."""
    images = images.unsqueeze(0) if images.dim() == 4 else images          # [B, S_r, 3, H, W]
    if images.shape[1] != shard.frames:
        raise ValueError(f"rank {shard.rank} holds frames [{shard.start}, {shard.stop}) but got {images.shape[1]}")
    unknown = [h for h in heads if h not in HEAD_NAMES]
    if unknown:
        raise ValueError(f"unknown heads {unknown}; choose from {HEAD_NAMES}")
    cfg = model.config
    keep = {cfg.depth - 1} if "camera" in heads else set()
    if "depth" in heads or "point" in heads:
        keep.update(cfg.dpt_layers)
    with sharded_attention(model, merge, outliers, group, log, stats), model._aggregator_context(images):
        layers = model.aggregator(images, keep_layers=sorted(keep), frame_offset=shard.start,
                                  total_frames=shard.total)
    out = model._run_heads(layers, tuple(h for h in heads if h != "camera"), tuple(images.shape[-2:]))
    if "camera" in heads:
        out["pose_enc"] = _sharded_camera_head(model, layers[cfg.depth - 1], shard, group, log)
    return out


def _sharded_camera_head(model: nn.Module, last: Tensor, shard: FrameShard, group, log) -> Tensor:
    """last block output [B, S_r, P, 2C] -> this rank's pose encodings [B, S_r, 9]."""
    with torch.autocast(last.device.type, enabled=False):
        cam = last[:, :, 0].to(model.camera_head.token_norm.weight.dtype)   # [B, S_r, 2C]
        cam_all = all_gather_rows(cam, 1, group, log, -1, "camera_tokens")  # [B, S, 2C]
        return model.camera_head(cam_all)[-1][:, shard.start:shard.stop]    # [B, S_r, 9]


def gather_outputs(out: Dict[str, Tensor], group=None) -> Dict[str, Tensor]:
    """Every rank's per-frame outputs concatenated along the frame dim (1), in rank order, on every
    rank. Tensors travel where they are: move them to the CPU first and pass a gloo ``group`` to
    keep them off the GPUs (``RankContext.cpu_group``)."""
    return {name: all_gather_rows(out[name], 1, group, name=f"output:{name}")
            for name in sorted(out) if isinstance(out[name], Tensor)}
