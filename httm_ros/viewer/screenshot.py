"""Screenshots of a viewer page with headless chromium (Debian's ``chromium``; WebGL rendered in
software by SwiftShader), and a check that the 3D view is not blank.

    write_screenshot(source, png_path)   source: an output bag, or the URL of a running viewer

Each attempt is one ``chromium --screenshot`` run; attempts repeat, with a longer virtual time
budget, until the 3D view has ``min_pixels`` non-background pixels or ``timeout`` runs out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

WINDOW = (1024, 768)
# the 3D view inside the window (left, top, right, bottom as fractions): viser's control panel is
# at the right, its "software WebGL" notice at the top left
VIEW_BOX = (0.0, 0.21, 0.66, 0.92)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


class ScreenshotError(RuntimeError):
    """No usable screenshot; ``str(err)`` says why."""


def find_chromium() -> Optional[str]:
    """$HTTM_CHROMIUM, or the first of CHROMIUM_NAMES on PATH; None when there is none."""
    explicit = os.environ.get("HTTM_CHROMIUM")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def chromium_command(chromium: str, url: str, png: Union[str, Path], user_data_dir: Union[str, Path],
                     budget_ms: int, window: Tuple[int, int] = WINDOW) -> List[str]:
    """One headless screenshot of ``url`` into ``png`` after ``budget_ms`` of virtual time."""
    return [chromium, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            "--disable-gpu-sandbox", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", f"--user-data-dir={user_data_dir}",
            f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}",
            f"--screenshot={png}", url]


def scene_pixels(png: Union[str, Path]) -> int:
    """Pixels of the 3D view (VIEW_BOX) that differ from its background (its most common colour)
    by more than 24 in some channel."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"), np.int16)                  # [H, W, 3]
    h, w = rgb.shape[:2]
    left, top, right, bottom = VIEW_BOX
    view = rgb[int(top * h):int(bottom * h), int(left * w):int(right * w)].reshape(-1, 3)
    colours, counts = np.unique(view, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    return int((np.abs(view - background).max(axis=1) > 24).sum())


def capture(url: str, png: Union[str, Path], timeout: float = 45.0, min_pixels: int = 2000,
            chromium: Optional[str] = None) -> int:
    """Screenshot ``url`` into ``png`` until its 3D view shows ``min_pixels`` pixels of scene;
    returns that count. Raises ScreenshotError (no chromium, it failed, or still blank at the end)."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise ScreenshotError("no chromium on PATH (Debian: apt-get install chromium; or set HTTM_CHROMIUM)")
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    deadline, budget, seen = time.monotonic() + timeout, 3000, 0
    with tempfile.TemporaryDirectory(prefix="httm-view-chromium-") as profile:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScreenshotError(f"{url}: the 3D view stayed blank ({seen} scene pixels < {min_pixels}) "
                                      f"within {timeout:.0f} s; last screenshot: {png}")
            png.unlink(missing_ok=True)
            try:
                run = subprocess.run(chromium_command(chromium, url, png, profile, budget), capture_output=True,
                                     text=True, timeout=left, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                continue
            if not png.exists():
                raise ScreenshotError(f"chromium wrote no screenshot (exit {run.returncode}): {run.stderr[-800:]}")
            seen = scene_pixels(png)
            if seen >= min_pixels:
                return seen
            budget = min(2 * budget, 20000)


def write_screenshot(source: Union[str, Path], png_path: Union[str, Path], timeout: float = 45.0,
                     node: str = "reconstruct_node") -> Path:
    """A PNG of the viewer showing ``source``: an output bag (a viewer is started on a free local
    port for it, and stopped), or the http:// URL of a running viewer. Returns ``png_path``."""
    if str(source).startswith(("http://", "https://")):
        capture(str(source), png_path, timeout)
        return Path(png_path)
    from .bag_feed import load_bag
    from .server import start_viewer

    server, feed = start_viewer("127.0.0.1", 0)
    try:
        load_bag(feed, source, node)
        if not feed.scene.counts["map"]:
            raise ScreenshotError(f"{source}: no map points to show")
        capture(f"http://127.0.0.1:{server.get_port()}", png_path, timeout)
    finally:
        server.stop()
    return Path(png_path)
