"""The last thing bench/gpu_next.sh prints: one table per kind of JSON in its output folder.

    python bench/gpu_next_table.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.bench.windows import table as windows_table  # noqa: E402


def _f(x, fmt=".3f") -> str:
    return "-" if x is None else format(x, fmt)


def e2e_table(rows) -> str:
    """One line per e2e row: seconds, peak, new keyframes/s (anchored rows), the breakdown."""
    parts = ("dino", "global_attention", "frame_attention", "aggregator_other", "heads_and_host")
    lines = ["| file | mode | sdpa | weights | frames | s | peak GiB | new kf/s | " + " | ".join(parts) + " |",
             "|" + "---|" * (8 + len(parts))]
    for name, data, r in rows:
        b = r.get("breakdown_s") or {}
        note = " SKIPPED" if r.get("skipped") else (" ERROR" if r.get("error") else "")
        lines.append(f"| {name} | {r['mode']}{note} | {r.get('attention_sdpa', '-')} | {data.get('weights_dtype')} "
                     f"| {r['frames']} | {_f(r.get('seconds'))} | {_f(r.get('peak_gib'))} "
                     f"| {_f(r.get('new_keyframes_per_s'), '.2f')} | " + " | ".join(_f(b.get(p)) for p in parts) + " |")
    return "\n".join(lines)


def main(folder: str) -> int:
    windows, e2e = [], []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("kind") == "windows":
            windows += [{**r, "label": f"{path.stem}: {r.get('label')} ({r.get('weights_dtype', 'bf16 code')})"}
                        for r in data["rows"]]
        elif data.get("kind") == "e2e":
            e2e += [(path.stem, data, r) for r in data["rows"]]
    if windows:
        print(windows_table(windows))
    if e2e:
        print(e2e_table(e2e))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
