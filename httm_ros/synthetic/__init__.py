"""Synthetic textured room scenes with ground truth (RGB, depth, intrinsics, poses).

>>> from httm_ros.synthetic import demo_sequence
>>> seq = demo_sequence(num_frames=100, width=518, height=392, seed=0)
>>> seq.images.shape, seq.depth.shape, seq.cam_to_world.shape
((100, 392, 518, 3), (100, 392, 518), (100, 4, 4))
"""

from .scene import Scene, SceneConfig, make_scene
from .sequence import Sequence, demo_sequence, intrinsics_from_fov, render_sequence
from .textures import Texture
from .trajectory import look_at, make_trajectory

__all__ = [
    "Scene", "SceneConfig", "Sequence", "Texture", "demo_sequence", "intrinsics_from_fov",
    "look_at", "make_scene",
    "make_trajectory", "render_sequence",
]
