"""Markdown tables of the benchmark report, one function per table (rows from ``results.load``)."""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional

from .results import FRAMES, MODES, NOT_YET, cell, ratio, value, window_mode, window_rows
from .targets import ANCHOR_DENSE, ANCHOR_FASTVGGT

def latency_table(rows: Dict) -> str:
    out = ["| frames | tokens | dense s | uniform s | HTTM s | HTTM vs dense | HTTM vs uniform | "
           "dense GiB | uniform GiB | HTTM GiB | VGGT* anchor s / GiB | FastVGGT anchor s / GiB | HTTM attention |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in FRAMES:
        d, u, h = (rows.get((m, f)) for m in MODES)
        tokens = next((r["tokens"] for r in (d, u, h) if r and r.get("tokens")), f * 1041)
        sp = ratio(value(d), value(h))
        su = ratio(value(u), value(h))
        flag = ""
        if h and h.get("merge_backends") and set(h["merge_backends"]) != {"triton"}:
            flag = " (backends: " + ", ".join(f"{k} x{v}" for k, v in h["merge_backends"].items()) + ")"
        out.append(f"| {f} | {tokens} | {cell(d)} | {cell(u)} | {cell(h)}{flag} | "
                   f"{'%.2fx' % sp if sp else NOT_YET} | {'%.2fx' % su if su else NOT_YET} | "
                   f"{cell(d, 'peak_gib', '{:.1f}')} | {cell(u, 'peak_gib', '{:.1f}')} | {cell(h, 'peak_gib', '{:.1f}')} | "
                   f"{ANCHOR_DENSE[f][0]} / {ANCHOR_DENSE[f][1]} | {ANCHOR_FASTVGGT[f][0]} / {ANCHOR_FASTVGGT[f][1]} | "
                   f"{attention_kernels(h)} |")
    return "\n".join(out)


def attention_kernels(row: Optional[Dict]) -> str:
    """SDPA kernels of an e2e HTTM row's grouped attention (``HTTMConfig.attention_sdpa``)."""
    if row is None or row.get("seconds") is None:
        return "-"
    return (row.get("attention_grouping_last_layer") or {}).get("kernels") or "cudnn (before attention_sdpa)"


def breakdown_table(rows: Dict) -> str:
    parts = ("dino", "frame_attention", "global_attention", "aggregator_other", "heads_and_host")
    out = ["| mode | frames | total s | " + " | ".join(parts) + " |", "|---" * (3 + len(parts)) + "|"]
    any_row = False
    for f in FRAMES:
        for m in MODES:
            r = rows.get((m, f))
            if r and r.get("breakdown_s"):
                any_row = True
                out.append(f"| {m} | {f} | {r['seconds']:.2f} | "
                           + " | ".join(f"{r['breakdown_s'].get(p, 0.0):.2f}" for p in parts) + " |")
    if not any_row:
        out.append(f"| {NOT_YET} |" + " |" * (2 + len(parts)))
    return "\n".join(out)


def warm_table(rows: Dict) -> str:
    """First (cold) forward at the row's size vs the timed warm ones."""
    out = ["| mode | frames | row warm-up | first run s | timed runs s |", "|---|---|---|---|---|"]
    for f in FRAMES:
        for m in MODES:
            r = rows.get((m, f))
            if r and r.get("runs_s"):
                warm = r.get("row_warmup")
                first = r.get("first_run_s")
                out.append(f"| {m} | {f} | {'yes' if warm else 'no' if warm is False else 'n/a'} | "
                           f"{'%.2f' % first if first is not None else '-'} | "
                           + ", ".join(f"{t:.2f}" for t in r["runs_s"]) + " |")
    if len(out) == 2:
        out.append(f"| {NOT_YET} | | | | |")
    return "\n".join(out)


def memory_table(rows: Dict) -> str:
    """Peak GiB while each part of the forward ran (rows that recorded the split)."""
    parts = ("dino", "frame_attention", "global_attention", "aggregator_other", "heads_and_host")
    out = ["| mode | frames | peak GiB | " + " | ".join(parts) + " |", "|---" * (3 + len(parts)) + "|"]
    for f in FRAMES:
        for m in MODES:
            r = rows.get((m, f))
            split = (r or {}).get("peak_gib_by_part")
            if split:
                out.append(f"| {m} | {f} | {split['total']:.2f} | "
                           + " | ".join(f"{split[p]:.2f}" if p in split else "-" for p in parts) + " |")
    if len(out) == 2:
        out.append(f"| {NOT_YET} |" + " |" * (2 + len(parts)))
    return "\n".join(out)


def layer_table(layer: Optional[Dict]) -> str:
    cols = ("attention", "matching", "aggregation_outliers", "unmerge", "reorder", "merge_overhead",
            "overhead_pct_of_attention")
    head = ["| method | " + " | ".join(c.replace("_", " ") + (" %" if c.endswith("pct_of_attention") else " ms")
                                      for c in cols) + " | total ms | kept Q | kept K/V |",
            "|---" * (len(cols) + 4) + "|"]
    if not layer:
        return "\n".join(head + [f"| {NOT_YET} |" + " |" * (len(cols) + 3)])
    for name in ("httm", "uniform"):
        m = layer.get(name)
        if not isinstance(m, dict):
            head.append(f"| {name} | {NOT_YET} |" + " |" * (len(cols) + 2))
        elif m.get("error"):
            head.append(f"| {name} | error: {m['error'].splitlines()[0][:100]} |" + " |" * (len(cols) + 2))
        else:
            c = m["columns_ms"]
            head.append(f"| {name} | " + " | ".join(f"{c.get(k, 0.0):.1f}" for k in cols)
                        + f" | {m['total_ms']:.1f} | {m['kept_q']:.3f} | {m['kept_kv']:.3f} |")
    dense = layer.get("dense_attention_ms")
    head.append(f"| dense SDPA | {('%.1f' % dense) if dense is not None else NOT_YET} |" + " |" * (len(cols) + 2))
    return "\n".join(head)


def fidelity_table(result: Dict) -> str:
    """Mean per-layer attention error vs dense, HTTM and uniform, for each comparison."""
    lines = ["| comparison | HTTM rel. error | uniform rel. error | HTTM kept Q / KV | uniform kept |",
             "|---|---|---|---|---|"]
    for name, comp in result["comparisons"].items():
        m = comp["mean"]
        lines.append(f"| {name} | {m['httm_rel_err']:.4f} | {m['uniform_rel_err']:.4f} | "
                     f"{m['httm_kept_q']:.3f} / {m['httm_kept_kv']:.3f} | {m['uniform_kept']:.3f} |")
    return "\n".join(lines)


def pipeline_table(results: List[Dict]) -> str:
    """Streaming-core post-processing per window (median ms), one row per result file."""
    stages = ("preprocess", "unproject", "filter", "align", "map_update", "post")
    head = "| device | " + " | ".join(stages) + " | model forward ms (same window) | file |"
    lines = [head, "|" + "---|" * (len(stages) + 3)]
    for r in results:
        model = r.get("model") or {}
        fwd = f"{1000 * model['model_s_median']:.0f}" if model.get("model_s_median") else "not measured"
        cells = [f"{r['median_ms'].get(k, float('nan')):.1f}" for k in stages]
        lines.append(f"| {r.get('device')} | " + " | ".join(cells) + f" | {fwd} | {r['file']} (`{r.get('command')}`, {str(r.get('git_commit'))[:7]}) |")
    return "\n".join(lines)


def node_table(results: List[Dict]) -> str:
    """Node overhead per window (ms) next to the model forward, one row per result file."""
    lines = ["| device | decode | host copies (inference thread) | conversion (publisher thread) | node CPU total "
             "| model dense / HTTM | node CPU / dense model | PointCloud2 pack 1M pts | file |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c, m, pc = r["conversion"], r.get("model") or {}, r["pointcloud2"]
        dense, httm = m.get("none_ms_median"), m.get("httm_ms_median")
        model = f"{dense:.0f} / {httm:.0f}" if dense and httm else "not measured"
        share = f"{100 * c['node_cpu_ms'] / dense:.1f}%" if dense else "not measured"
        lines.append(f"| {r.get('device')} | {c['decode_ms']:.1f} | {c['host_copy_ms']:.1f} | {c['convert_ms']:.1f} | "
                     f"{c['node_cpu_ms']:.1f} | {model} | {share} | {pc['pack_ms']:.1f} | {r['file']} "
                     f"(`{r.get('command')}`, {str(r.get('git_commit'))[:7]}) |")
    return "\n".join(lines)


def _s(x, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _device(env: Dict) -> str:
    return str(env.get("device") or "?").split(" (")[0]


def windows_table(results: List[Dict]) -> str:
    """The node's regime (``httm-bench windows``): one row per mode and window size."""
    lines = ["| mode | frames (new) | windows timed | start-up warm-up s | first window s | p50 s | p90 s "
             "| p99 s | max s | windows > 1.3x p50 | peak GiB | device | commit | file |",
             "|---" * 14 + "|"]
    for r in window_rows(results):
        warm = (r.get("warmup") or {}).get("seconds") if isinstance(r.get("warmup"), dict) else None
        timed = f"{r.get('windows_timed', '-')}" + (f" of {r.get('windows')} (cut by the time limit)"
                                                    if r.get("truncated") else "")
        spikes = "-" if r.get("spikes") is None else f"{r['spikes']} of {r['spikes_of']}"
        name = window_mode(r) + (f" ERROR: {r['error'].splitlines()[0][:80]}" if r.get("error") else "")
        lines.append(f"| {name} | {r.get('frames')} ({r.get('new')}) | {timed} | "
                     f"{', '.join(f'{x:.2f}' for x in warm) if warm else '-'} | {_s(r.get('first_window_s'))} | "
                     f"{_s(r.get('p50_s'))} | {_s(r.get('p90_s'))} | {_s(r.get('p99_s'))} | {_s(r.get('max_s'))} | "
                     f"{spikes} | {_s(r.get('peak_gib'), '{:.2f}')} | {_device(r['env'])} | "
                     f"{str(r['env'].get('commit'))[:7]} | {r['file']} |")
    if len(lines) == 2:
        lines.append(f"| {NOT_YET} |" + " |" * 13)
    return "\n".join(lines)


# ------------------------------------------------------------------ merging on trained attention (httm-eval merging)
MERGING_SETTINGS = {"dense": "dense", "uniform": "uniform (FastVGGT)", "httm": "HTTM, paper ratios",
                    "httm_matched": "HTTM, uniform's budget"}
# which attention comparison (and side) gives a setting's per-layer error
_ATTENTION_OF = {"uniform": ("paper_ratios", "uniform_rel_err"), "httm": ("paper_ratios", "httm_rel_err"),
                 "httm_matched": ("matched_budget", "httm_rel_err")}


def merging_attention_error(result: Dict, frames: int, setting: str) -> Optional[float]:
    """Mean over global layers (and clips) of a setting's attention output error vs dense (dense: 0)."""
    if setting == "dense":
        return 0.0
    comp, key = _ATTENTION_OF.get(setting, (None, None))
    got = next((a for a in result.get("attention", []) if a.get("frames") == frames and a.get("comparison") == comp),
               None)
    return None if got is None else (got.get("mean") or {}).get(key)


def merging_metric(row: Dict, key: str) -> Optional[float]:
    """A setting's pooled metric: its summary's, except Acc. / Comp., the median over the clips (a
    clip whose Sim(3) alignment fails puts metres into a mean over clips)."""
    if key in ("acc", "comp"):
        vals = [c[key] for c in row.get("clips", []) if c.get(key) is not None]
        return statistics.median(vals) if vals else None
    return (row.get("summary") or {}).get(key)


def merging_offline_table(result: Dict) -> List[str]:
    """One row per (frames, setting): kept fractions, held-out depth / camera metrics, clouds, attention error."""
    lines = ["| frames | setting | Q kept | K/V kept | AbsRel ↓ | δ<1.25 ↑ | rot. err. median ° ↓ | ATE % ↓ | "
             "Acc. m (median of clips) ↓ | Comp. m (median of clips) ↓ | attention rel. err. (mean of layers) ↓ | "
             "model s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.get("offline", []):
        s = r.get("summary") or {}
        lines.append(f"| {r.get('frames')} | {MERGING_SETTINGS.get(r.get('setting'), r.get('setting'))} | "
                     f"{_s(s.get('kept_q'))} | {_s(s.get('kept_kv'))} | {_s(s.get('abs_rel'), '{:.4f}')} | "
                     f"{_s(s.get('delta_1_25'), '{:.4f}')} | {_s(s.get('rot_err_median_deg'), '{:.2f}')} | "
                     f"{_s(s.get('ate_percent'), '{:.2f}')} | {_s(merging_metric(r, 'acc'), '{:.4f}')} | "
                     f"{_s(merging_metric(r, 'comp'), '{:.4f}')} | "
                     f"{_s(merging_attention_error(result, r.get('frames'), r.get('setting')), '{:.4f}')} | "
                     f"{_s(s.get('model_s'), '{:.2f}')} |")
    if len(lines) == 2:
        lines.append(f"| {NOT_YET} |" + " |" * 11)
    return lines


def merging_layer_table(result: Dict) -> List[str]:
    """Per global layer: attention output error vs dense of each merging setting (mean over clips)."""
    lines = ["| frames | layer | uniform (FastVGGT) | HTTM, paper ratios | HTTM, uniform's budget |", "|---|---|---|---|---|"]
    by = {(a.get("frames"), a.get("comparison")): a for a in result.get("attention", [])}
    for frames in sorted({f for f, _ in by}):
        paper, matched = by.get((frames, "paper_ratios")) or {}, by.get((frames, "matched_budget")) or {}
        for i, row in enumerate(paper.get("layers", [])):
            m = (matched.get("layers") or [{}] * (i + 1))[i]
            lines.append(f"| {frames} | {row.get('layer')} | {_s(row.get('uniform_rel_err'), '{:.4f}')} | "
                         f"{_s(row.get('httm_rel_err'), '{:.4f}')} | {_s(m.get('httm_rel_err'), '{:.4f}')} |")
    if len(lines) == 2:
        lines.append(f"| {NOT_YET} |" + " |" * 4)
    return lines


def merging_streaming_table(result: Dict) -> List[str]:
    """The settings through the streaming pipeline, one row per (clip, setting)."""
    lines = ["| clip (seed) | frames | setting | Q kept | K/V kept | windows | rejected | keyframes in the trajectory | "
             "ATE % ↓ | Acc. m ↓ | Comp. m ↓ | model s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.get("streaming", []):
        lines.append(f"| {r.get('scene_seed')} | {r.get('frames')} | "
                     f"{MERGING_SETTINGS.get(r.get('setting'), r.get('setting'))} | {_s(r.get('kept_q'))} | "
                     f"{_s(r.get('kept_kv'))} | {r.get('windows')} | {r.get('rejected')} | {r.get('keyframes')} | "
                     f"{_s(r.get('ate_percent'), '{:.2f}')} | {_s(r.get('acc'), '{:.4f}')} | "
                     f"{_s(r.get('comp'), '{:.4f}')} | {_s(r.get('model_s'), '{:.2f}')} |")
    if len(lines) == 2:
        lines.append(f"| {NOT_YET} |" + " |" * 11)
    return lines
