"""The demo's output files: the recorded outputs as a bag, the last map as PLY, the last path as
TUM, the PNG preview, the browser viewer's screenshot of the output bag and summary.json (with the
result's accuracy against the sequence's ground truth: :mod:`.accuracy`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..bag_io import BagError, OutputBag
from ..run_summary import format_summary
from .accuracy import demo_accuracy, true_path_in_world
from .console import accuracy_line, log, verdict_lines
from .demo_bag import thumbnails
from .preview import render_preview
from .recorder import Recorder
from .demo_settings import Settings

FILES = (("bag", "outputs_bag"), ("map", "map.ply"), ("trajectory", "trajectory.tum"),
         ("preview", "preview.png"), ("summary", "summary.json"), ("log", "node.log"))
VIEWER_PNG = "viewer.png"


def path_to_matrices(path_msg) -> tuple:
    """nav_msgs/Path -> (stamps [N] s, camera-to-world [N, 4, 4])."""
    from httm_ros.geometry import quat_to_rotmat

    poses = path_msg.poses if path_msg is not None else []
    mats = np.tile(np.eye(4), (len(poses), 1, 1))
    stamps = np.zeros(len(poses))
    for i, p in enumerate(poses):
        o, t = p.pose.orientation, p.pose.position
        mats[i, :3, :3] = quat_to_rotmat(np.array([o.x, o.y, o.z, o.w]))
        mats[i, :3, 3] = (t.x, t.y, t.z)
        stamps[i] = p.header.stamp.sec + 1e-9 * p.header.stamp.nanosec
    return stamps, mats


def write_outputs(out: Path, recorder: Recorder, summary: dict, bag: Path, settings: Settings,
                  test_weights: bool) -> Dict[str, str]:
    """Output bag, PLY, TUM, preview PNG and summary.json; returns their paths."""
    from httm_ros.io.ply import save_ply
    from httm_ros.io.tum import save_tum
    from httm_ros.ros.codec import decode_pointcloud2_xyzrgb

    with OutputBag(out / "outputs_bag") as ob:
        for topic, msgtype, ns, data in sorted(recorder.records, key=lambda r: r[2]):
            ob.write_raw(topic, msgtype, ns, data)
        ob.commit(overwrite=True)
    maps, paths = recorder.messages("map"), recorder.messages("path")
    xyz, rgb = decode_pointcloud2_xyzrgb(maps[-1]) if maps else (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    save_ply(out / "map.ply", xyz, rgb)                              # xyz [N, 3], rgb [N, 3]
    stamps, mats = path_to_matrices(paths[-1] if paths else None)
    save_tum(out / "trajectory.tum", stamps, mats)
    summary["accuracy"] = demo_accuracy(stamps, mats, xyz, settings.frames)
    warning = ("NO CHECKPOINT: deterministic TEST WEIGHTS - every stage ran, but the geometry is MEANINGLESS "
               "(WEIGHTS=model.safetensors scripts/demo for VGGT-1B)") if test_weights else None
    title = (f"httm_ros demo: {summary['frames_received']} synthetic frames replayed from a rosbag into "
             f"reconstruct_node (merging {summary['merge_mode']})")
    image = render_preview(xyz, rgb, mats, thumbnails(bag, settings.frames), title,
                           [f"model: {settings.model}"] + format_summary(summary)[:2]
                           + [accuracy_line(summary["accuracy"])]
                           + verdict_lines(summary), warning,
                           true_path_in_world(stamps, mats, settings.frames) if summary["accuracy"] else None)
    image.save(out / "preview.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    files = {key: str(out / name) for key, name in FILES}
    viewer = write_viewer_screenshot(out)
    return {**files, "viewer": str(viewer)} if viewer else files


def write_viewer_screenshot(out: Path) -> Optional[Path]:
    """``viewer.png``: httm-view showing ``out/outputs_bag``, rendered by headless chromium. Where it
    cannot be made (no chromium, e.g. not installable without root; no viser; a blank page) the
    demo prints one warning line and goes on: returns None."""
    png = out / VIEWER_PNG
    try:
        from httm_ros.viewer.screenshot import ScreenshotError, write_screenshot
    except ImportError as err:
        log(f"WARNING: no viewer screenshot (httm-view is not importable: {err})")
        return None
    try:
        write_screenshot(out / "outputs_bag", png)
    except (ScreenshotError, BagError, ImportError, OSError) as err:
        png.unlink(missing_ok=True)
        log(f"WARNING: no viewer screenshot {png}: {err}")
        return None
    log(f"viewer screenshot: {png} (httm-view --bag {out / 'outputs_bag'} shows it live)")
    return png
