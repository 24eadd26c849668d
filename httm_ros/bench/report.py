"""BENCHMARKS.md (and a PNG) from benchmark JSON files, and nothing else: a number that is not in
a file is "not measured yet". Later files win over earlier ones for the same (mode, frames).

    python -m httm_ros.bench report bench/results/*.json --md BENCHMARKS.md --png bench/results/latency.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

FRAMES = (100, 300, 500, 1000)
MODES = ("dense", "uniform", "httm")
NOT_YET = "not measured yet"
# Public FastVGGT code on the same H100 (shared/benchmarks/ANCHORS.md): seconds, peak GiB
ANCHOR_DENSE = {100: (4.26, 6.5), 300: (27.47, 15.1), 500: (72.17, 23.8), 1000: (278.64, 45.3)}
ANCHOR_FASTVGGT = {100: (2.56, 8.3), 300: (11.67, 20.6), 500: (26.57, 32.9), 1000: (67.04, 63.7)}
SPEEDUP_TARGET = {100: 2.0, 300: 4.0, 500: 5.5, 1000: 8.0}
OVERHEAD_TARGET_PCT = 10.0


def result_kind(data: Dict) -> Optional[str]:
    """The benchmark a JSON file comes from: its "kind", or recognised by its fields for the
    streaming-core (``httm_ros.pipeline.bench``) and node (``httm_ros.ros.bench``) benchmarks."""
    if data.get("kind"):
        return data["kind"]
    if "aligned_windows_in_median" in data:
        return "pipeline"
    if "pointcloud2" in data and "conversion" in data:
        return "node"
    if "comparisons" in data and "setup" in data:
        return "fidelity"
    return None


def load_side(files: Sequence[Path]) -> Dict[str, List[Dict]]:
    """-> {"pipeline" | "node" | "fidelity": [results, each with its file name]}."""
    side: Dict[str, List[Dict]] = {"pipeline": [], "node": [], "fidelity": []}
    for path in (Path(f) for f in files if Path(f).is_file()):
        data = json.loads(path.read_text())
        kind = result_kind(data)
        if kind in side:
            side[kind].append({**data, "file": path.name})
    return side


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


def load(files: Sequence[Path]) -> Tuple[Dict, Optional[Dict], List[Dict], List[Dict]]:
    """-> ({(mode, frames): row}, layer result or None, environments, test summaries)."""
    rows: Dict = {}
    by_run: Dict = {}                                       # (commit, device) -> measured rows, by date
    layer = None
    envs: List[Dict] = []
    tests: List[Dict] = []
    files = [Path(f) for f in files if Path(f).is_file()]                 # an unmatched glob is no file
    for path in sorted(files, key=lambda p: _date(p)):
        data = json.loads(Path(path).read_text())
        kind = data.get("kind")
        if kind in ("e2e", "layer"):
            envs.append({"file": Path(path).name, "kind": kind, **data.get("env", {})})
        if kind in ("e2e", "layer") and (data.get("config", "1b") != "1b"):
            envs[-1]["kind"] += " (ignored: not VGGT-1B)"
            continue
        if kind == "e2e":
            for row in data.get("rows", []):
                if row.get("image_hw", [392, 518]) != [392, 518]:
                    continue
                key = (row["mode"], row["frames"])
                if row.get("seconds") is not None or key not in rows:
                    rows[key] = {**row, "file": Path(path).name}
                if row.get("seconds") is not None:
                    env = data.get("env", {})
                    run = (env.get("commit"), env.get("device")) if env.get("commit") else Path(path).name
                    by_run.setdefault(run, {})[key] = {**row, "file": Path(path).name}
        elif kind == "layer" and data.get("layer_result"):
            layer = {**data["layer_result"], "file": Path(path).name}
        elif kind == "tests":
            tests.append({**data, "file": Path(path).name})
    return same_run(rows, by_run), layer, envs, tests


def same_run(rows: Dict, by_run: Dict) -> Dict:
    """Comparisons come from one run (one commit on one device): per frame count, dense and HTTM
    (and uniform where that run has it) from the newest run that measured both; otherwise the
    newest row of each mode."""
    out = dict(rows)
    for f in {frames for _, frames in rows}:
        pair = [run for run, got in by_run.items() if ("dense", f) in got and ("httm", f) in got]
        if pair:
            got = by_run[pair[-1]]
            for mode in MODES:
                if (mode, f) in got:
                    out[(mode, f)] = got[(mode, f)]
    return out


def _date(path: Path) -> str:
    try:
        return json.loads(Path(path).read_text()).get("env", {}).get("date_utc", "")
    except (OSError, ValueError):
        return ""


def _s(row: Optional[Dict], key: str = "seconds", fmt: str = "{:.2f}") -> str:
    if row is None:
        return NOT_YET
    if row.get(key) is not None:
        return fmt.format(row[key])
    if row.get("skipped"):
        return "skipped (time guard)"
    if row.get("error"):
        return "error: " + row["error"].splitlines()[0][:80]
    return NOT_YET


def _val(row: Optional[Dict], key: str = "seconds") -> Optional[float]:
    return None if row is None else row.get(key)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


def latency_table(rows: Dict) -> str:
    out = ["| frames | tokens | dense s | uniform s | HTTM s | HTTM vs dense | HTTM vs uniform | "
           "dense GiB | uniform GiB | HTTM GiB | VGGT* anchor s / GiB | FastVGGT anchor s / GiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in FRAMES:
        d, u, h = (rows.get((m, f)) for m in MODES)
        tokens = next((r["tokens"] for r in (d, u, h) if r and r.get("tokens")), f * 1041)
        sp = _ratio(_val(d), _val(h))
        su = _ratio(_val(u), _val(h))
        flag = ""
        if h and h.get("merge_backends") and set(h["merge_backends"]) != {"triton"}:
            flag = " (backends: " + ", ".join(f"{k} x{v}" for k, v in h["merge_backends"].items()) + ")"
        out.append(f"| {f} | {tokens} | {_s(d)} | {_s(u)} | {_s(h)}{flag} | "
                   f"{'%.2fx' % sp if sp else NOT_YET} | {'%.2fx' % su if su else NOT_YET} | "
                   f"{_s(d, 'peak_gib', '{:.1f}')} | {_s(u, 'peak_gib', '{:.1f}')} | {_s(h, 'peak_gib', '{:.1f}')} | "
                   f"{ANCHOR_DENSE[f][0]} / {ANCHOR_DENSE[f][1]} | {ANCHOR_FASTVGGT[f][0]} / {ANCHOR_FASTVGGT[f][1]} |")
    return "\n".join(out)


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


def targets(rows: Dict, layer: Optional[Dict]) -> List[Tuple[str, str, str]]:
    """(target, measured, verdict) for every target of issue 4."""
    out = []

    def verdict(ok: Optional[bool], detail: str) -> str:
        return NOT_YET if ok is None else ("met" if ok else "MISSED") + (f" ({detail})" if detail else "")

    for f in FRAMES:
        d = rows.get(("dense", f))
        t, mem = _val(d), _val(d, "peak_gib")
        out.append((f"dense <= VGGT* anchor time @{f}", f"{_s(d)} (anchor {ANCHOR_DENSE[f][0]} s)",
                    verdict(None if t is None else t <= ANCHOR_DENSE[f][0],
                            "" if t is None else f"{100 * (t / ANCHOR_DENSE[f][0] - 1):+.1f}%")))
        out.append((f"dense peak <= VGGT* anchor peak @{f}",
                    f"{_s(d, 'peak_gib', '{:.1f}')} (anchor {ANCHOR_DENSE[f][1]} GiB)",
                    verdict(None if mem is None else mem <= ANCHOR_DENSE[f][1],
                            "" if mem is None else f"{mem - ANCHOR_DENSE[f][1]:+.1f} GiB")))
    for f in FRAMES:
        sp = _ratio(_val(rows.get(("dense", f))), _val(rows.get(("httm", f))))
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
        hm, dm = _val(rows.get(("httm", f)), "peak_gib"), _val(rows.get(("dense", f)), "peak_gib")
        out.append((f"HTTM peak <= dense peak @{f}",
                    NOT_YET if hm is None or dm is None else f"{hm:.3f} vs {dm:.3f} GiB",
                    verdict(None if hm is None or dm is None else hm <= dm,
                            "" if hm is None or dm is None or hm <= dm else f"+{1024 * (hm - dm):.0f} MiB")))
    for f in FRAMES[1:]:
        su = _ratio(_val(rows.get(("uniform", f))), _val(rows.get(("httm", f))))
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


def build_report(files: Sequence[Path], png: Optional[Path] = None, notes: Optional[Path] = None) -> str:
    rows, layer, envs, tests = load(files)
    side = load_side(files)
    pipe, node = side["pipeline"], side["node"]
    plotted = plot(rows, png) if png is not None else None
    t = targets(rows, layer)
    lines = [
        "# Benchmarks: VGGT-1B dense vs uniform merging vs HTTM (issue 4)",
        "",
        "Generated by `python -m httm_ros.bench report " + " ".join(str(Path(f)) for f in files)
        + "` from the JSON files only; a cell without a measurement says *" + NOT_YET + "*. "
        "Setup: VGGT-1B with random weights made on the GPU (fp32 weights, bf16 autocast in the "
        "aggregator, heads in fp32), 518x392 frames of a synthetic panning video (1041 tokens per "
        "frame), camera + depth heads, one forward timed on the host clock around a synchronised "
        "call (median of 3 repeats at 100 frames, 1 from 300; rows with a row warm-up ran one "
        "untimed forward at their own size first: always for HTTM, whose attention shapes depend on "
        "the outlier counts, and for the others where it costs about a minute or less; see the "
        "cold/warm table), peak = `torch.cuda.max_memory_allocated` over the timed forwards "
        "(weights and frames included). "
        "Modes: dense; uniform = FastVGGT-style merging (one matching for all heads, ~34% kept); "
        "HTTM = the paper's defaults (Q 20%, K/V 30%, blocks 128 x 30 frames) on the Triton fast path. "
        "How to run: `bash bench/gpu_suite.sh 1` and `2` (see the script); methods: docs/KERNELS.md.",
        "",
        "## Latency and peak memory",
        "",
        latency_table(rows),
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in t],
        "",
        "Missed targets: the breakdown below says where the time goes; the bound table shows how "
        "close HTTM is to the arithmetic limit (everything but global attention unchanged, global "
        "attention at 6% of dense).",
        "",
        "## Where the time goes (seconds, last repeat, CUDA events)",
        "",
        "`global_attention` / `frame_attention` = the attention cores (`Attention.attend`: SDPA, or "
        "merge + SDPA + unmerge); `aggregator_other` = norms, qkv/proj, MLPs, RoPE; "
        "`heads_and_host` = camera + depth heads and host time outside the aggregator.",
        "",
        breakdown_table(rows),
        "",
        "## Cold and warm forwards",
        "",
        "`first run` = the untimed forward at the row's size (a cold start: cuDNN execution plans, "
        "Triton compilation and launch-config tuning for new shapes).",
        "",
        warm_table(rows),
        "",
        "## Peak memory by part (GiB)",
        "",
        "Peak allocated memory while each part ran (weights, frames and kept block outputs "
        "included); the row's peak is the largest.",
        "",
        memory_table(rows),
        "",
        "## Arithmetic bound for HTTM",
        "",
        limits(rows),
        "",
        "## One global layer at 1000 frames (the paper's Table 4)",
        "",
        (f"Frames: {layer.get('frames')}. Input: {layer.get('input')}; {layer.get('tokens')} tokens, {layer.get('heads')} heads of "
         f"{layer.get('head_dim')}, {layer.get('dtype')}. Medians of profiled calls after a warm-up; "
         "`reorder` is 0 because temporal reordering is fused into the kernels' gathers. "
         "Paper (A100): HTTM attention 2.95 s, matching 0.12 s, aggregation 0.41 s; "
         "FastVGGT 2.97 / 2.31 / 0.11 s.") if layer else NOT_YET,
        "",
        layer_table(layer),
        "",
    ]
    if tests:
        lines += ["## GPU tests", ""] + [f"- `{x.get('command', '')}`: {x.get('summary', '')} "
                                         f"(exit {x.get('exit_code')}, {x['file']})"
                                         + (f". {x['note']}" if x.get("note") else "") for x in tests] + [""]
    if pipe:
        lines += ["## Streaming core: post-processing per window (issue 5)", "",
                  "24 keyframes at 518x392 (16 new per window), median of the aligned windows, ms: "
                  "everything the core does besides the model forward.", "", pipeline_table(pipe), ""]
    if node:
        lines += ["## ROS node overhead per window (issue 6)", "",
                  "24 keyframes at 518x392, ms per window, without the DDS publish calls (no rclpy on "
                  "the GPU machine; see the notes). The inference thread only makes host copies; "
                  "conversion runs on the publisher thread while the next window is in the model.",
                  "", node_table(node), ""]
    for fid in side["fidelity"]:
        lines += ["## Fidelity proxy (issues 3 and 8)", "",
                  f"{fid['setup'].get('model')}; {fid['setup'].get('images')}, {fid['setup'].get('tokens')} tokens; "
                  f"metric: {fid['setup'].get('metric')}; mean over the 24 global layers. "
                  f"`{fid.get('command')}` at {str(fid.get('git_commit'))[:7]} on {fid.get('device')} ({fid['file']}). "
                  "Random (golden) weights: this measures how far each merge moves attention, not "
                  "reconstruction accuracy.", "", fidelity_table(fid), ""]
    if notes is not None and Path(notes).is_file():
        lines += [Path(notes).read_text().rstrip(), ""]
    if plotted:
        lines += ["## Plot", "", f"![latency]({png.as_posix()}) (drawn with {plotted})", ""]
    lines += ["## Provenance", "", "| file | kind | commit | source sha256 | device | torch | triton | command |",
              "|---|---|---|---|---|---|---|---|"]
    for e in envs:
        lines.append(f"| {e['file']} | {e['kind']} | {e.get('commit')} | {e.get('source_sha256')} | "
                     f"{e.get('device')} | {e.get('torch')} | {e.get('triton')} | `{e.get('command')}` |")
    if not envs:
        lines.append(f"| {NOT_YET} | | | | | | | |")
    return "\n".join(lines) + "\n"
