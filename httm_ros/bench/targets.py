"""Issue 4's targets and the anchors they compare with; the arithmetic bound for HTTM."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .results import FRAMES, NOT_YET, cell, ratio, value

# Public FastVGGT code on the same H100 (shared/benchmarks/ANCHORS.md): seconds, peak GiB
ANCHOR_DENSE = {100: (4.26, 6.5), 300: (27.47, 15.1), 500: (72.17, 23.8), 1000: (278.64, 45.3)}
ANCHOR_FASTVGGT = {100: (2.56, 8.3), 300: (11.67, 20.6), 500: (26.57, 32.9), 1000: (67.04, 63.7)}
SPEEDUP_TARGET = {100: 2.0, 300: 4.0, 500: 5.5, 1000: 8.0}
OVERHEAD_TARGET_PCT = 10.0


def targets(rows: Dict, layer: Optional[Dict]) -> List[Tuple[str, str, str]]:
    """(target, measured, verdict) for every target of issue 4."""
    out = []

    def verdict(ok: Optional[bool], detail: str) -> str:
        return NOT_YET if ok is None else ("met" if ok else "MISSED") + (f" ({detail})" if detail else "")

    for f in FRAMES:
        d = rows.get(("dense", f))
        t, mem = value(d), value(d, "peak_gib")
        out.append((f"dense <= VGGT* anchor time @{f}", f"{cell(d)} (anchor {ANCHOR_DENSE[f][0]} s)",
                    verdict(None if t is None else t <= ANCHOR_DENSE[f][0],
                            "" if t is None else f"{100 * (t / ANCHOR_DENSE[f][0] - 1):+.1f}%")))
        out.append((f"dense peak <= VGGT* anchor peak @{f}",
                    f"{cell(d, 'peak_gib', '{:.1f}')} (anchor {ANCHOR_DENSE[f][1]} GiB)",
                    verdict(None if mem is None else mem <= ANCHOR_DENSE[f][1],
                            "" if mem is None else f"{mem - ANCHOR_DENSE[f][1]:+.1f} GiB")))
    for f in FRAMES:
        sp = ratio(value(rows.get(("dense", f))), value(rows.get(("httm", f))))
        out.append((f"HTTM speed-up over our dense >= {SPEEDUP_TARGET[f]}x @{f}",
                    NOT_YET if sp is None else f"{sp:.2f}x",
                    verdict(None if sp is None else sp >= SPEEDUP_TARGET[f],
                            "" if sp is None else f"{100 * (sp / SPEEDUP_TARGET[f] - 1):+.0f}% of target")))
    pct = None
    if layer and layer.get("frames") == 1000 and isinstance(layer.get("httm"), dict) \
            and layer["httm"].get("columns_ms"):
        pct = layer["httm"]["columns_ms"]["overhead_pct_of_attention"]
    out.append((f"HTTM merge overhead <= {OVERHEAD_TARGET_PCT:.0f}% of its attention @1000 (one layer)",
                NOT_YET if pct is None else f"{pct:.1f}%",
                verdict(None if pct is None else pct <= OVERHEAD_TARGET_PCT, "")))
    for f in FRAMES:
        hm, dm = value(rows.get(("httm", f)), "peak_gib"), value(rows.get(("dense", f)), "peak_gib")
        out.append((f"HTTM peak <= dense peak @{f}",
                    NOT_YET if hm is None or dm is None else f"{hm:.3f} vs {dm:.3f} GiB",
                    verdict(None if hm is None or dm is None else hm <= dm,
                            "" if hm is None or dm is None or hm <= dm else f"+{1024 * (hm - dm):.0f} MiB")))
    for f in FRAMES[1:]:
        su = ratio(value(rows.get(("uniform", f))), value(rows.get(("httm", f))))
        out.append((f"HTTM faster than uniform @{f}", NOT_YET if su is None else f"{su:.2f}x",
                    verdict(None if su is None else su > 1.0, "")))
    return out


def limits(rows: Dict) -> str:
    """Amdahl view per frame count: what HTTM's time would be if its global attention were the
    arithmetic 6% of dense global attention and merging were free."""
    out = ["| frames | dense global attention s | dense rest s | HTTM global attention s (incl. merging) | "
           "HTTM rest s | bound: rest + 6% of dense attention | speed-up bound |", "|---" * 7 + "|"]
    for f in FRAMES:
        d, h = rows.get(("dense", f)), rows.get(("httm", f))
        if not (d and h and d.get("breakdown_s") and h.get("breakdown_s")):
            out.append(f"| {f} | {NOT_YET} | | | | | |")
            continue
        dg = d["breakdown_s"]["global_attention"]
        hg = h["breakdown_s"]["global_attention"]
        bound = (h["seconds"] - hg) + 0.06 * dg
        out.append(f"| {f} | {dg:.2f} | {d['seconds'] - dg:.2f} | {hg:.2f} | {h['seconds'] - hg:.2f} | "
                   f"{bound:.2f} | {d['seconds'] / bound:.2f}x |")
    return "\n".join(out)
