"""How frames are split across ranks: contiguous chunks on HTTM's temporal groups.

Rank r holds frames [start, stop); rank 0 holds frame 0 (the anchor). With merging the chunk
boundaries fall on the temporal groups of the whole sequence (``httm.regions.balanced_chunks``
of n_t frames), so no merging region straddles two ranks and every rank builds exactly the
regions the one-process forward would build for its frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from httm_ros.httm.regions import balanced_chunks


@dataclass(frozen=True)
class FrameShard:
    """Frames [start, stop) of a sequence of ``total`` frames, held by ``rank`` of ``world``."""

    rank: int
    world: int
    start: int
    stop: int
    total: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


def shard_frames(total: int, world: int, temporal_frames: Optional[int] = None) -> List[FrameShard]:
    """``world`` contiguous shards of ``total`` frames, as even in frames as the temporal groups
    of ``temporal_frames`` (None: single frames, for dense attention) allow; each rank >= 1 group.

    Raises ValueError when there are fewer groups than ranks.
    """
    if world < 1 or total < 1:
        raise ValueError(f"need >= 1 rank and >= 1 frame, got world={world}, total={total}")
    sizes = balanced_chunks(total, temporal_frames).tolist() if temporal_frames else [1] * total
    if len(sizes) < world:
        raise ValueError(f"{total} frames form {len(sizes)} temporal groups (n_t={temporal_frames}): "
                         f"too few for {world} ranks (each rank needs one whole group)")
    ends = [sum(sizes[:i + 1]) for i in range(len(sizes))]              # frame after group i
    bounds, used = [0], 0                                                # groups handed out so far
    for r in range(1, world):
        target = r * total / world
        choices = range(used + 1, len(sizes) - (world - r) + 1)          # leave a group per later rank
        used = min(choices, key=lambda g: (abs(ends[g - 1] - target), g))
        bounds.append(ends[used - 1])
    bounds.append(total)
    return [FrameShard(r, world, bounds[r], bounds[r + 1], total) for r in range(world)]
