"""VGGT over several processes with torch.distributed (NCCL on GPUs, gloo on CPU): frames split
across ranks on HTTM's temporal groups, global attention through all-gathered (merged) keys and
values. docs/DISTRIBUTED.md has the design and the measurements."""

from .collectives import GatherLog, all_gather_rows
from .launcher import (NCCL_ENV, DistributedError, PeerFailure, RankContext, init_from_env, launch,
                       run_rank)
from .sharded_attention import OUTLIER_MODES, ShardedDenseCore, ShardedHTTMCore
from .sharded_forward import gather_outputs, sharded_attention, sharded_forward
from .shards import FrameShard, shard_frames

__all__ = ["GatherLog", "all_gather_rows", "NCCL_ENV", "DistributedError", "PeerFailure", "RankContext",
           "init_from_env", "launch", "run_rank", "OUTLIER_MODES", "ShardedDenseCore", "ShardedHTTMCore",
           "gather_outputs", "sharded_attention", "sharded_forward", "FrameShard", "shard_frames"]
