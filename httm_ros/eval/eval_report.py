"""Results of ``httm-eval``: JSON (everything) and a Markdown table in the style of the paper's Table 1."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List

import numpy as np

COLUMNS = (  # (header, key, format)
    ("Method", "method", "{}"), ("Pipeline", "pipeline", "{}"), ("Q ratio", "q_ratio", "{:.2f}"),
    ("K/V ratio", "kv_ratio", "{:.2f}"), ("Acc. ↓", "acc", "{:.4f}"), ("Comp. ↓", "comp", "{:.4f}"),
    ("Acc. med.", "acc_median", "{:.4f}"), ("Comp. med.", "comp_median", "{:.4f}"),
    ("ATE ↓", "ate_rmse", "{:.4f}"), ("RPE t ↓", "rpe_trans", "{:.4f}"), ("RPE r (°) ↓", "rpe_rot_deg", "{:.3f}"),
    ("Time (s) ↓", "time_s", "{:.2f}"), ("Peak mem. (MiB)", "peak_mib", "{:.0f}"), ("Frames", "frames", "{}"),
)


def jsonable(obj):
    """Nested copy with numpy scalars/arrays as Python values and NaN/inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def markdown_table(rows: List[dict]) -> str:
    """The results rows as a Markdown table (– where a metric does not apply)."""
    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k), f) for _, k, f in COLUMNS) + " |")
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """Title, setup lines, the table and the notes of one ``httm-eval`` result."""
    ds, st = result["dataset"], result["settings"]
    lines = [f"# httm-eval: {ds.get('name', '?')}", ""]
    lines += [f"- data: {ds.get('source', '')} ({ds.get('layout', '')}), {ds.get('keyframes')} keyframes "
              f"(stride {ds.get('stride')}) of {ds.get('frames_total')}, model input "
              f"{ds.get('model_input_hw', ['?', '?'])[1]}x{ds.get('model_input_hw', ['?', '?'])[0]}",
              f"- predictor: {result.get('predictor')}; device: {result.get('device')}",
              f"- ground truth: {result.get('ground_truth')}",
              f"- alignment: {st.get('alignment')}",
              f"- units: ground-truth units (metres for the datasets); Acc./Comp. = mean nearest-neighbour "
              f"distance pred->GT / GT->pred; ATE = RMSE of Sim(3)-aligned camera centres; RPE over "
              f"consecutive keyframes (RMSE)",
              f"- time: {st.get('time')}; memory: {st.get('memory')}", ""]
    lines.append(markdown_table(result["rows"]))
    notes = result.get("notes") or []
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    lines += ["", f"Command: `{result.get('command', '')}`", ""]
    return "\n".join(lines)


def write_results(result: dict, out: Path, name: str = "results") -> List[Path]:
    """Write OUT/name.json and OUT/name.md; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{name}.json", out / f"{name}.md"
    js.write_text(json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n")
    md.write_text(markdown_report(result))
    return [js, md]


def fidelity_markdown(result: dict) -> str:
    """Mean per-layer errors of every comparison of the fidelity proxy, as a Markdown table."""
    lines = ["# Fidelity proxy: merged vs dense global attention", "",
             f"- {result['setup']['model']}; {result['setup']['images']}; {result['setup']['tokens']} tokens, "
             f"{result['setup']['heads']} heads",
             f"- metric: {result['setup']['metric']}", "",
             "| Comparison | HTTM rel. err. | uniform rel. err. | HTTM Q kept | HTTM K/V kept | uniform kept |",
             "|---|---|---|---|---|---|"]
    for name, comp in result["comparisons"].items():
        m = comp["mean"]
        lines.append(f"| {name} | {m['httm_rel_err']:.4f} | {m['uniform_rel_err']:.4f} | {m['httm_kept_q']:.3f} | "
                     f"{m['httm_kept_kv']:.3f} | {m['uniform_kept']:.3f} |")
    lines += ["", f"Command: `{result.get('command', '')}`", ""]
    return "\n".join(lines)

