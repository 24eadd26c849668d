"""A PNG preview of a reconstruction that a person can open: map cloud + trajectory, with PIL only.

    render_preview(xyz, rgb, cam_to_world, thumbnails, title, lines, warning, truth).save("preview.png")

Layout: a title band (what was run, the numbers, a red warning for test weights), a top-down view
(world x to the right, z = the first camera's viewing direction upwards), a perspective view from
above and behind the first camera, and a strip of input frames. Points are splatted 2x2 pixels
with a z-buffer (nearest wins); the trajectory is drawn as an orange line through the keyframe
camera centres, each camera as a small arrow along its viewing direction (green: first, red: last);
with ``truth`` (the demo: the true camera path, Sim(3)-aligned to the published one) a thin cyan line.
Input coordinates are the node's published world frame (REP 103: x the first camera's forward,
y its left, z its up; docs/ROS.md "Frames and TF"); the views draw them in the first camera's
optical axes (x right, y down, z forward); with a real model the origin is the first keyframe's camera.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH = 1280
PANEL_H = 520
BACKGROUND = (250, 250, 250)
PANEL_BG = (30, 30, 34)
TRAJ = (255, 160, 0)
FIRST, LAST = (40, 200, 60), (230, 50, 50)
TRUTH = (0, 220, 255)                 # the true camera path, Sim(3)-aligned (the demo)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                           # Pillow without FreeType sizes
        return ImageFont.load_default()


# ----------------------------------------------------------------------------- projection
def splat(canvas: np.ndarray, uv: np.ndarray, depth: np.ndarray, rgb: np.ndarray, size: int = 2) -> None:
    """Draw points (pixel coords ``uv`` [N,2], ``depth`` [N], colours [N,3]) into ``canvas``
    [H,W,3] as size x size squares; where several land on a pixel the nearest wins."""
    h, w = canvas.shape[:2]
    offsets = [(dx, dy) for dx in range(size) for dy in range(size)]
    u = np.concatenate([np.floor(uv[:, 0]).astype(np.int64) + dx for dx, _ in offsets])
    v = np.concatenate([np.floor(uv[:, 1]).astype(np.int64) + dy for _, dy in offsets])
    d = np.tile(depth, len(offsets))
    c = np.tile(rgb, (len(offsets), 1))
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h) & np.isfinite(d)
    pix, d, c = v[ok] * w + u[ok], d[ok], c[ok]
    order = np.lexsort((d, pix))                # by pixel, then nearest first
    pix, c = pix[order], c[order]
    first = np.unique(pix, return_index=True)[1]
    canvas.reshape(-1, 3)[pix[first]] = c[first]


def _robust_bounds(points: np.ndarray, extra: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Lower/upper corners covering 1-99 % of the points and all of ``extra``."""
    parts = []
    if len(points):
        parts += [np.percentile(points, 1, axis=0)[None], np.percentile(points, 99, axis=0)[None]]
    if len(extra):
        parts.append(extra)
    if not parts:
        return -np.ones(3), np.ones(3)
    allp = np.concatenate(parts)
    lo, hi = allp.min(0), allp.max(0)
    pad = 0.05 * max(float((hi - lo).max()), 1e-6)
    return lo - pad, hi + pad


class TopDown:
    """Orthographic view of the x-z plane (x right, z up on the image), looking down world -y."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, width: int, height: int, margin: int = 16) -> None:
        span = max((hi[0] - lo[0]) / (width - 2 * margin), (hi[2] - lo[2]) / (height - 2 * margin), 1e-9)
        self.scale, self.width, self.height = 1.0 / span, width, height
        self.center = (lo + hi) / 2

    def project(self, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """World points [N,3] -> (pixels [N,2], depth [N]; smaller = nearer = higher, i.e. -y)."""
        u = (p[:, 0] - self.center[0]) * self.scale + self.width / 2
        v = self.height / 2 - (p[:, 2] - self.center[2]) * self.scale
        return np.stack([u, v], 1), p[:, 1]


class Perspective:
    """Pinhole view from above and behind the first camera, looking at the scene's centre."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, width: int, height: int) -> None:
        target = (lo + hi) / 2
        radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
        eye = target + radius * np.array([0.3, -0.9, -1.3])           # right, up (-y), behind (-z)
        forward = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross(forward, np.array([0.0, -1.0, 0.0]))          # world up is -y
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        self.rot = np.stack([right, down, forward])                    # world -> view (x right, y down)
        self.eye, self.width, self.height = eye, width, height
        self.focal = 0.9 * width / 2 / np.tan(np.radians(30))

    def project(self, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        q = (p - self.eye) @ self.rot.T
        z = q[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.focal * q[:, 0] / z + self.width / 2
            v = self.focal * q[:, 1] / z + self.height / 2
        depth = np.where(z > 1e-6, z, np.nan)
        return np.stack([u, v], 1), depth


# ----------------------------------------------------------------------------- panels
def _draw_trajectory(draw: ImageDraw.ImageDraw, view, cam_to_world: np.ndarray, arrow: float) -> None:
    """Orange line through the camera centres; an arrow per camera along its optical axis."""
    if len(cam_to_world) == 0:
        return
    centres = cam_to_world[:, :3, 3]
    tips = centres + arrow * cam_to_world[:, :3, 2]
    (c_uv, c_d), (t_uv, t_d) = view.project(centres), view.project(tips)
    if len(centres) > 1 and np.isfinite(c_d).all():
        draw.line([tuple(p) for p in c_uv], fill=TRAJ, width=3)
    for i in range(len(centres)):
        if not (np.isfinite(c_d[i]) and np.isfinite(t_d[i])):
            continue
        colour = FIRST if i == 0 else LAST if i == len(centres) - 1 else TRAJ
        draw.line([tuple(c_uv[i]), tuple(t_uv[i])], fill=colour, width=2)
        x, y = c_uv[i]
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour, outline=(0, 0, 0))


def _draw_truth(draw: ImageDraw.ImageDraw, view, truth: np.ndarray) -> None:
    """The true camera path [T, 3] as a thin line (drawn under the published trajectory)."""
    if len(truth) < 2:
        return
    uv, depth = view.project(truth)
    ok = np.isfinite(depth)
    if ok.sum() > 1:
        draw.line([tuple(p) for p in uv[ok]], fill=TRUTH, width=2)


def render_view(view, xyz: np.ndarray, rgb: np.ndarray, cam_to_world: np.ndarray, label: str,
                arrow: float, truth: Optional[np.ndarray] = None) -> Image.Image:
    """One panel: splatted points, the true path (if given), trajectory, label."""
    canvas = np.empty((view.height, view.width, 3), np.uint8)
    canvas[:] = PANEL_BG
    if len(xyz):
        uv, depth = view.project(xyz)
        splat(canvas, uv, depth, rgb)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    if truth is not None:
        _draw_truth(draw, view, truth)
    _draw_trajectory(draw, view, cam_to_world, arrow)
    if not len(xyz):
        draw.text((view.width // 2, view.height // 2), "no map points", fill=(220, 220, 220),
                  font=_font(20), anchor="mm")
    draw.rectangle([0, 0, view.width, 26], fill=(0, 0, 0))
    draw.text((8, 5), label, fill=(255, 255, 255), font=_font(15))
    return img


def _thumbnail_strip(thumbnails: Sequence[Tuple[str, np.ndarray]], width: int, height: int) -> Image.Image:
    strip = Image.new("RGB", (width, height), BACKGROUND)
    if not thumbnails:
        return strip
    draw = ImageDraw.Draw(strip)
    cell = width // len(thumbnails)
    for i, (label, rgb) in enumerate(thumbnails):
        im = Image.fromarray(np.asarray(rgb, np.uint8))
        im.thumbnail((cell - 16, height - 30))
        x = i * cell + (cell - im.width) // 2
        strip.paste(im, (x, 24))
        draw.text((i * cell + cell // 2, 4), label, fill=(20, 20, 20), font=_font(14), anchor="ma")
    return strip


# The node publishes in the REP-103 world (x forward, y left, z up: docs/ROS.md "Frames and TF");
# the views below draw in the first camera's optical axes (x right, y down, z forward):
# optical = OPTICAL_FROM_WORLD @ world (= httm_ros.ros.messages.WORLD_FROM_OPTICAL transposed).
OPTICAL_FROM_WORLD = np.array([[0.0, -1.0, 0.0],
                               [0.0, 0.0, -1.0],
                               [1.0, 0.0, 0.0]])


def _to_optical(xyz: np.ndarray, cam_to_world: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] and poses [K, 4, 4] -> the same in the first camera's optical axes."""
    rot = np.eye(4)
    rot[:3, :3] = OPTICAL_FROM_WORLD
    return xyz @ OPTICAL_FROM_WORLD.T, rot @ cam_to_world


def render_preview(xyz: np.ndarray, rgb: np.ndarray, cam_to_world: np.ndarray,
                   thumbnails: Sequence[Tuple[str, np.ndarray]] = (), title: str = "",
                   lines: Sequence[str] = (), warning: Optional[str] = None,
                   truth: Optional[np.ndarray] = None) -> Image.Image:
    """The whole preview image (see the module docstring) of a map and poses in the published
    REP-103 world frame; ``truth`` [T, 3]: the true camera path in that frame (Sim(3)-aligned), drawn
    as a thin line beside the published one."""
    xyz, cam_to_world = _to_optical(np.asarray(xyz, np.float64).reshape(-1, 3),
                                    np.asarray(cam_to_world, np.float64).reshape(-1, 4, 4))
    if truth is not None:
        truth = np.asarray(truth, np.float64).reshape(-1, 3) @ OPTICAL_FROM_WORLD.T
    rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
    finite = np.isfinite(xyz).all(1)
    xyz, rgb = xyz[finite], rgb[finite]
    lo, hi = _robust_bounds(xyz, cam_to_world[:, :3, 3])
    arrow = 0.06 * float((hi - lo).max())
    half = WIDTH // 2 - 6
    top = render_view(TopDown(lo, hi, half, PANEL_H), xyz, rgb, cam_to_world,
                      "top-down (first camera right -> right, forward -> up)", arrow, truth)
    persp = render_view(Perspective(lo, hi, half, PANEL_H), xyz, rgb, cam_to_world,
                        "perspective (above and behind the first camera)", arrow, truth)
    header_h = 34 + 20 * len(lines) + (26 if warning else 0)
    strip_h = 150 if thumbnails else 0
    legend_h = 26
    out = Image.new("RGB", (WIDTH, header_h + PANEL_H + legend_h + strip_h), BACKGROUND)
    draw = ImageDraw.Draw(out)
    draw.text((12, 8), title, fill=(0, 0, 0), font=_font(20))
    y = 36
    if warning:
        draw.text((12, y), warning, fill=(200, 0, 0), font=_font(16))
        y += 26
    for line in lines:
        draw.text((12, y), line, fill=(40, 40, 40), font=_font(14))
        y += 20
    out.paste(top, (4, header_h))
    out.paste(persp, (WIDTH - half - 4, header_h))
    _legend(draw, header_h + PANEL_H + 5, len(xyz), len(cam_to_world), truth is not None)
    if thumbnails:
        out.paste(_thumbnail_strip(thumbnails, WIDTH, strip_h), (0, header_h + PANEL_H + legend_h))
    return out


def _legend(draw: ImageDraw.ImageDraw, y: int, points: int, cameras: int, truth: bool = False) -> None:
    font = _font(14)
    x = 12
    items: List[Tuple[Tuple[int, int, int], str]] = [
        (TRAJ, f"trajectory ({cameras} keyframe cameras, arrows = viewing direction)"),
        (FIRST, "first camera"), (LAST, "last camera")] + ([(TRUTH, "true path (Sim(3)-aligned)")] if truth else [])
    for colour, text in items:
        draw.ellipse([x, y + 3, x + 10, y + 13], fill=colour, outline=(0, 0, 0))
        draw.text((x + 16, y), text, fill=(20, 20, 20), font=font)
        x += 28 + int(draw.textlength(text, font=font))
    draw.text((x, y), f"map: {points} coloured points", fill=(20, 20, 20), font=font)
