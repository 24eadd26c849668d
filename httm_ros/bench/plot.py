"""The report's plot: seconds per forward vs frames, per mode and anchor (matplotlib, else PIL)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from .results import FRAMES, MODES
from .targets import ANCHOR_DENSE, ANCHOR_FASTVGGT

def plot(rows: Dict, path: Path) -> Optional[str]:
    """Seconds vs frames per mode (+ anchors), log scale. matplotlib, else PIL; None if neither."""
    series = {m: [(f, rows[(m, f)]["seconds"]) for f in FRAMES if rows.get((m, f)) and rows[(m, f)].get("seconds")]
              for m in MODES}
    series["VGGT* anchor"] = [(f, ANCHOR_DENSE[f][0]) for f in FRAMES]
    series["FastVGGT anchor"] = [(f, ANCHOR_FASTVGGT[f][0]) for f in FRAMES]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_pil(series, path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in series.items():
        if pts:
            ax.plot(*zip(*pts), marker="o", linestyle="--" if "anchor" in name else "-", label=name)
    ax.set_xlabel("frames (518x392, 1041 tokens each)")
    ax.set_ylabel("seconds per forward (camera + depth)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("VGGT-1B on H100: dense vs uniform merging vs HTTM")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return "matplotlib"


def _plot_pil(series: Dict, path: Path) -> Optional[str]:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    import math

    w, h, pad = 700, 450, 60
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    ys = [s for pts in series.values() for _, s in pts] or [1.0, 10.0]
    lo, hi = math.log10(min(ys)) - 0.1, math.log10(max(ys)) + 0.1

    def xy(f, s):
        return (pad + (f - 100) / 900 * (w - 2 * pad), h - pad - (math.log10(s) - lo) / (hi - lo) * (h - 2 * pad))

    draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
    colours = ["red", "blue", "green", "gray", "orange"]
    for i, (name, pts) in enumerate(series.items()):
        c = colours[i % len(colours)]
        if len(pts) > 1:
            draw.line([xy(*p) for p in pts], fill=c, width=2)
        for p in pts:
            x, y = xy(*p)
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        draw.text((pad + 5, pad + 5 + 14 * i), name, fill=c)
    draw.text((pad, h - pad + 10), "frames 100..1000 (log seconds)", fill="black")
    img.save(path)
    return "PIL"
