"""Markdown table of a window-size sweep (`httm-bench e2e --overlap O`, issue 16) for docs/STREAMING.md.

    python bench/window_size_table.py bench/results/window_size/cpu_synth.json
"""

from __future__ import annotations

import json
import sys


def table(data: dict) -> str:
    rows = {(r["mode"], r["frames"]): r for r in data["rows"] if r.get("seconds")}
    lines = ["| K (new) | dense s (min) | dense new kf/s | HTTM s (min) | HTTM new kf/s | HTTM / dense |",
             "|---|---|---|---|---|---|"]
    for k in sorted({f for _, f in rows}):
        d, h = rows.get(("dense", k)), rows.get(("httm", k))
        cell = lambda r: "- | -" if r is None else f"{r['seconds']:.3f} ({min(r['runs_s']):.3f}) | {r['new_keyframes_per_s']:.2f}"  # noqa: E731
        ratio = f"{h['new_keyframes_per_s'] / d['new_keyframes_per_s']:.2f}x" if d and h else "-"
        lines.append(f"| {k} ({k - data['overlap']}) | {cell(d)} | {cell(h)} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    data = json.load(open(sys.argv[1]))
    env = data["env"]
    print(f"Run: commit `{env.get('commit')}`, {env.get('device', env.get('cpu', ''))}, {env.get('date_utc')}; "
          f"config {data['config']}, overlap {data['overlap']}, weights {data['weights_dtype']}.\n")
    print(table(data))
