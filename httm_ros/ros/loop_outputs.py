"""The node's side of loop closure (docs/ROS.md "Loop closure"); no rclpy here.

The core (``rec.loops``, :mod:`httm_ros.pipeline.loop_closure`) applies a pose-graph correction at
the start of a window: stored keyframes, the trajectory and the map (rebuilt from the stored
keyframes) move together. The node then republishes ~/path (every keyframe, corrected) and ~/map
with that window, counts on ~/stats, and writes the exports at shutdown.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .messages import scaled_poses, to_world_poses


class LoopOutputs:
    """Tracks the corrections already published; ``corrected_path`` hands a new one to the publisher."""

    def __init__(self) -> None:
        self.published = 0
        self.exported = False

    def corrected_path(self, rec, stamp_of: Callable[[float], Any], scale: float = 1.0,
                       log: Optional[Callable[[str], None]] = None) -> Optional[Tuple[List[Any], np.ndarray]]:
        """(stamps, cam_to_world [N, 4, 4] core world, translations x ``scale``) of the whole path when
        the core applied a correction since the last call, else None (the graph holds segment 0 only)."""
        loops = rec.loops
        if loops is None or loops.corrections == self.published or len(rec.segments) > 1:
            return None
        self.published = loops.corrections
        traj = rec.trajectory
        poses = scaled_poses(traj.cam_to_world(), scale)                       # [N, 4, 4]
        if log is not None:
            log(f"pose graph: {loops.graph.loops_accepted} loop closures, correction {loops.corrections} "
                "applied: ~/path and ~/map republished")
        return [stamp_of(t) for t in traj.stamps], poses

    def export(self, rec, folder: str) -> List[str]:
        """``folder`` (loop_export_dir): keyframes_before.tum, keyframes_after.tum (REP-103 world,
        world units) and pose_graph.g2o, after the last correction (loops still pending are
        rejected first: no later loop can confirm them); once. [] when off."""
        loops = getattr(rec, "loops", None)
        if self.exported or loops is None or not loops.active or not folder:
            return []
        self.exported = True
        loops.flush()                        # the end of the stream: loops still pending are rejected
        loops.wait()
        loops.apply(rec)
        paths = loops.save(folder, world=to_world_poses(np.eye(4)[None])[0])
        loops.close()
        return paths


__all__ = ["LoopOutputs"]
