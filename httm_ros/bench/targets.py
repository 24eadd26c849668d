"""Issue 4's targets and the anchors they compare with; the arithmetic bound for HTTM."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .results import FRAMES, NOT_YET, cell, ratio, same_run_pair, value, window_mode, window_rows

# Public FastVGGT code on the same H100 (shared/benchmarks/ANCHORS.md): seconds, peak GiB
ANCHOR_DENSE = {100: (4.26, 6.5), 300: (27.47, 15.1), 500: (72.17, 23.8), 1000: (278.64, 45.3)}
ANCHOR_FASTVGGT = {100: (2.56, 8.3), 300: (11.67, 20.6), 500: (26.57, 32.9), 1000: (67.04, 63.7)}
SPEEDUP_TARGET = {100: 2.0, 300: 4.0, 500: 5.5, 1000: 8.0}
OVERHEAD_TARGET_PCT = 10.0
# Issue 14, the node's regime (windows of new content): HTTM p50 vs dense p50 per window size,
# window p99 and the first window after the start-up warm-up, both relative to p50
WINDOW_SPEEDUP_TARGET = {24: 1.2, 64: 1.5}
WINDOW_P99_OVER_P50 = 1.3
WINDOW_FIRST_OVER_P50 = 1.5
# Issue 14, onboard GPUs without Triton: the PyTorch path's peak memory within 1.1x of the Triton path's
FALLBACK_PEAK_OVER_TRITON = 1.1


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


def _verdict(ok: Optional[bool], detail: str = "") -> str:
    return NOT_YET if ok is None else ("met" if ok else "MISSED") + (f" ({detail})" if detail else "")


def by_device(results: Sequence[Dict]) -> List[Tuple[str, List[Dict]]]:
    """[(device name, its result files)], by name: the newest same-run pair is chosen per device,
    so the device a target names (the H200) keeps its row beside newer runs on another one."""
    groups: Dict[str, List[Dict]] = {}
    for res in results:
        name = str(res.get("env", {}).get("device", "?")).split(" (")[0]
        groups.setdefault(name, []).append(res)
    return sorted(groups.items())


def window_targets(results: List[Dict]) -> List[Tuple[str, str, str]]:
    """(target, measured, verdict) for issue 14's window targets: HTTM vs dense and vs the
    FastVGGT code (p50, same run), and every HTTM row's p99 and first window against its p50."""
    out = []
    for device, runs in by_device(results) or [("", [])]:
        on = f", {device}" if device else ""
        for frames, need in sorted(WINDOW_SPEEDUP_TARGET.items()):
            dense, httm = same_run_pair(runs, frames, "dense")
            sp = None if httm is None else dense["p50_s"] / httm["p50_s"]
            out.append((f"HTTM p50 >= {need}x faster than dense p50 @{frames} frames{on}",
                        NOT_YET if sp is None else (f"{sp:.2f}x ({httm['p50_s']:.3f} vs {dense['p50_s']:.3f} s: "
                                                    f"{window_mode(httm)} vs {window_mode(dense)})"),
                        _verdict(None if sp is None else sp >= need,
                                 "" if sp is None else f"{100 * (sp / need - 1):+.0f}% of target")))
        streamed = {r.get("frames") for r in window_rows(runs) if r.get("mode") == "fastvggt" and r.get("new") != 0}
        for frames in sorted(streamed):          # (new 0: one forward of the same frames, judged below)
            peer, httm = same_run_pair(runs, frames, "fastvggt")
            sp = None if httm is None else peer["p50_s"] / httm["p50_s"]
            out.append((f"HTTM p50 below the FastVGGT code's p50 @{frames} frames{on}",
                        NOT_YET if sp is None else f"{sp:.2f}x ({httm['p50_s']:.3f} vs {peer['p50_s']:.3f} s)",
                        _verdict(None if sp is None else sp > 1.0)))
    out += fallback_targets(results)
    for r in (r for r in window_rows(results) if r.get("mode") == "httm"):
        name, p50 = f"{window_mode(r)} @{r.get('frames')} frames", r.get("p50_s")
        for label, key, limit in (("p99", "p99_s", WINDOW_P99_OVER_P50),
                                  ("first window", "first_window_s", WINDOW_FIRST_OVER_P50)):
            x = r.get(key)
            q = None if x is None or not p50 else x / p50
            out.append((f"{label} <= {limit}x p50: {name}",
                        NOT_YET if q is None else f"{q:.2f}x ({x:.3f} vs {p50:.3f} s)",
                        _verdict(None if q is None else q <= limit)))
    return out


# Issue 14, one forward over the same frames (the FastVGGT code in its own process, same device call)
UNIFORM_OVER_PEER = 1.10            # our uniform mode (FastVGGT's algorithm) within 10% of its code's time
HTTM_1000_S = 25.0                  # HTTM at 1000 frames (named for the H200)
HTTM_OVER_PEER_1000 = 2.6           # HTTM >= 2.6x faster than the FastVGGT code at 1000 frames
HTTM_PEAK_OVER_PEER_1000 = 0.5      # HTTM's peak memory <= 50% of the FastVGGT code's at 1000 frames


def peer_oneshot_targets(e2e_results: Sequence[Dict], window_results: Sequence[Dict]) -> List[Tuple[str, str, str]]:
    """(target, measured, verdict) against the FastVGGT code on the same frames: its windows file
    with no new frames (``--new 0``; warm time = its first timed forward, after the warm-up) paired
    with our e2e rows of the same commit and device. Ours: the fastest row of the mode at that size."""
    out = []
    peers = [(r, res.get("env", {})) for res in window_results for r in res.get("rows", [])
             if r.get("mode") == "fastvggt" and r.get("new") == 0 and r.get("first_window_s")]
    for peer, penv in sorted(peers, key=lambda x: x[0]["frames"]):
        f, ps = peer["frames"], peer["first_window_s"]
        ours: Dict[str, Dict] = {}
        for res in e2e_results:
            env = res.get("env", {})
            if (env.get("commit"), env.get("device")) != (penv.get("commit"), penv.get("device")):
                continue
            for r in res.get("rows", []):
                faster = r["mode"] not in ours or (r.get("seconds") or 0) < ours[r["mode"]]["seconds"]
                if r.get("frames") == f and r.get("seconds") and faster:
                    ours[r["mode"]] = r
        where = f"{str(penv.get('commit', '?'))[:7]}, {penv.get('device', '?')}"
        u, h = ours.get("uniform"), ours.get("httm")
        q = None if u is None else u["seconds"] / ps
        out.append((f"our uniform within {100 * (UNIFORM_OVER_PEER - 1):.0f}% of the FastVGGT code's time @{f} frames",
                    NOT_YET if q is None else f"{q:.2f}x ({u['seconds']:.2f} vs {ps:.2f} s; {where})",
                    _verdict(None if q is None else q <= UNIFORM_OVER_PEER)))
        if f != 1000:
            continue
        sp = None if h is None else ps / h["seconds"]
        out.append((f"HTTM >= {HTTM_OVER_PEER_1000}x faster than the FastVGGT code @1000 frames",
                    NOT_YET if sp is None else f"{sp:.2f}x ({h['seconds']:.2f} vs {ps:.2f} s; {where})",
                    _verdict(None if sp is None else sp >= HTTM_OVER_PEER_1000)))
        mem = None if h is None or not peer.get("peak_gib") else h["peak_gib"] / peer["peak_gib"]
        out.append((f"HTTM peak <= {100 * HTTM_PEAK_OVER_PEER_1000:.0f}% of the FastVGGT code's @1000 frames",
                    NOT_YET if mem is None else f"{100 * mem:.0f}% ({h['peak_gib']:.1f} vs {peer['peak_gib']:.1f} GiB)",
                    _verdict(None if mem is None else mem <= HTTM_PEAK_OVER_PEER_1000)))
        out.append((f"HTTM <= {HTTM_1000_S:.0f} s @1000 frames (named for the H200)",
                    NOT_YET if h is None else f"{h['seconds']:.2f} s on {penv.get('device', '?')}",
                    _verdict(None if h is None else h["seconds"] <= HTTM_1000_S)))
    return out


def fallback_targets(results: Sequence[Dict]) -> List[Tuple[str, str, str]]:
    """The PyTorch path (``--httm-set impl=torch``: what runs where Triton is missing) against the
    Triton path at the same window size and setting, same commit and device (one device call):
    peak memory within FALLBACK_PEAK_OVER_TRITON, time beside it."""
    def setting(r: Dict) -> Tuple:
        sets = {k: v for k, v in (r.get("sets") or {}).items() if k != "impl"}
        return (r.get("frames"), r["env"].get("commit"), r["env"].get("device"), r.get("weights_dtype"),
                bool(r.get("compile_tokenwise")), bool(r.get("compile_heads")), r.get("compile_mode"),
                r.get("dpt_dtype", "float32"), tuple(sorted(sets.items())))

    rows = [r for r in window_rows(results) if r.get("mode") == "httm" and not r.get("error") and r.get("peak_gib")]
    out = []
    for fallback in (r for r in rows if (r.get("sets") or {}).get("impl") == "torch"):
        triton = next((r for r in rows if setting(r) == setting(fallback)
                       and (r.get("sets") or {}).get("impl", "auto") != "torch"), None)
        if triton is None:
            continue
        q = fallback["peak_gib"] / triton["peak_gib"]
        out.append((f"PyTorch path peak <= {FALLBACK_PEAK_OVER_TRITON}x the Triton path's: {window_mode(triton)} "
                    f"@{fallback['frames']} frames",
                    f"{q:.2f}x ({fallback['peak_gib']:.2f} vs {triton['peak_gib']:.2f} GiB; p50 "
                    f"{fallback.get('p50_s') or float('nan'):.3f} vs {triton.get('p50_s') or float('nan'):.3f} s)",
                    _verdict(q <= FALLBACK_PEAK_OVER_TRITON)))
    return out
