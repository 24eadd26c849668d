"""Run summaries from httm_ros/msg/WindowStats messages (offline runs and recorded node outputs).

``summarize(stats)`` -> a JSON-ready dict (windows, keyframes, map points, per-window latency and
kept-token ratios); ``format_summary(summary)`` -> the lines printed at the end of a run.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Sequence


def window_row(msg) -> dict:
    """One WindowStats -> a plain dict of what a person reads."""
    return {
        "window": int(msg.window_index),
        "keyframes": int(msg.num_keyframes),
        "new_keyframes": int(msg.num_keyframes) - int(msg.num_overlap_keyframes),
        "accepted": bool(msg.alignment_accepted),
        "reason": str(msg.alignment_message),
        "tokens": int(msg.tokens_total),
        "kept_q": round(float(msg.kept_q_ratio), 4),
        "kept_kv": round(float(msg.kept_kv_ratio), 4),
        "model_ms": round(float(msg.latency_model_ms), 1),
        "total_ms": None if math.isnan(msg.latency_total_ms) else round(float(msg.latency_total_ms), 1),
        "map_points": int(msg.map_points),
    }


def summarize(stats: Sequence, extra: dict = None) -> dict:
    """Totals and per-window rows of a run (``stats`` in window order)."""
    rows = [window_row(m) for m in stats]
    accepted = [r for r in rows if r["accepted"]]
    last = stats[-1] if stats else None
    out = {
        "windows": len(rows),
        "windows_accepted": len(accepted),
        "windows_rejected": len(rows) - len(accepted),
        "keyframes": int(last.keyframes_total) if last is not None else 0,
        "keyframes_in_map": sum(r["new_keyframes"] for r in accepted),
        "frames_received": int(last.frames_received) if last is not None else 0,
        "map_points": int(last.map_points) if last is not None else 0,
        "merge_mode": str(last.merge_mode) if last is not None else "",
        "image_size": [int(last.image_width), int(last.image_height)] if last is not None else [],
        "mean_model_ms": _mean(r["model_ms"] for r in rows),
        "mean_total_ms": _mean(r["total_ms"] for r in rows if r["total_ms"] is not None),
        "mean_kept_q": _mean(r["kept_q"] for r in rows),
        "mean_kept_kv": _mean(r["kept_kv"] for r in rows),
        "per_window": rows,
    }
    out.update(extra or {})
    return out


def _mean(values: Iterable[float]):
    values = list(values)
    return round(sum(values) / len(values), 3) if values else None


def format_summary(summary: dict) -> List[str]:
    """Human-readable lines: totals, then one line per window."""
    size = "x".join(str(v) for v in summary["image_size"]) or "-"
    lines = [
        f"frames received {summary['frames_received']}, keyframes {summary['keyframes']} "
        f"({summary['keyframes_in_map']} in the map), windows {summary['windows']} "
        f"({summary['windows_accepted']} accepted, {summary['windows_rejected']} rejected), "
        f"map points {summary['map_points']}",
        f"model input {size}, merging {summary['merge_mode'] or '-'}: mean kept tokens q "
        f"{_fmt(summary['mean_kept_q'])}, kv {_fmt(summary['mean_kept_kv'])}; mean model latency "
        f"{_fmt(summary['mean_model_ms'], 'ms')}, mean window latency {_fmt(summary['mean_total_ms'], 'ms')}",
        "window  keyframes(new)  tokens  kept_q  kept_kv  model_ms  total_ms  result",
    ]
    for r in summary["per_window"]:
        result = "accepted" if r["accepted"] else f"rejected: {r['reason']}"
        lines.append(f"{r['window']:>6}  {r['keyframes']:>9}({r['new_keyframes']:>2})  {r['tokens']:>6}  "
                     f"{r['kept_q']:>6.3f}  {r['kept_kv']:>7.3f}  {r['model_ms']:>8.0f}  "
                     f"{'-' if r['total_ms'] is None else format(r['total_ms'], '.0f'):>8}  {result}")
    return lines


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.0f}" if unit == "ms" or abs(value) >= 100 else f"{value:.3f}"
    return f"{text} {unit}".strip()
