"""Benchmark result files: what kind each is, and the rows a report reads from them.

A number that is not in a file is "not measured yet"; later files win over earlier ones for the
same (mode, frames).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

FRAMES = (100, 300, 500, 1000)
MODES = ("dense", "uniform", "httm")
NOT_YET = "not measured yet"


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
    """-> {"pipeline" | "node" | "fidelity" | "windows": [results, each with its file name]}."""
    side: Dict[str, List[Dict]] = {"pipeline": [], "node": [], "fidelity": [], "windows": []}
    for path in (Path(f) for f in files if Path(f).is_file()):
        data = json.loads(path.read_text())
        kind = result_kind(data)
        if kind in side:
            side[kind].append({**data, "file": path.name})
    return side


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
        if kind in ("e2e", "layer", "windows"):
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


def cell(row: Optional[Dict], key: str = "seconds", fmt: str = "{:.2f}") -> str:
    if row is None:
        return NOT_YET
    if row.get(key) is not None:
        return fmt.format(row[key])
    if row.get("skipped"):
        return "skipped (time guard)"
    if row.get("error"):
        return "error: " + row["error"].splitlines()[0][:80]
    return NOT_YET


def value(row: Optional[Dict], key: str = "seconds") -> Optional[float]:
    return None if row is None else row.get(key)


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


# ----------------------------------------------------------------------------- windows (issue 14)
WINDOW_MODE_ORDER = ("fastvggt", "dense", "httm")


def window_sdpa(row: Dict) -> Optional[str]:
    """The attention kernels of an HTTM windows row (``HTTMConfig.attention_sdpa``)."""
    return ((row.get("merge_config") or {}).get("attention_sdpa")
            or (row.get("sets") or {}).get("attention_sdpa"))


def window_mode(row: Dict) -> str:
    """How a windows row is named in the tables (ours with weights other than float32, or compiled, say so)."""
    if row.get("mode") == "fastvggt":
        return "FastVGGT code (its merging, bf16 weights)"
    weights = row.get("weights_dtype") or "float32"
    variant = (("" if weights == "float32" else f", {weights} weights") + (", compiled" if row.get("compile_tokenwise") else "")
               + ("" if row.get("dpt_dtype", "float32") == "float32" else f", DPT {row['dpt_dtype']}")
               + (", DPT compiled" if row.get("compile_heads") else "")
               + (f", {row['compile_mode']}" if row.get("compile_mode") else ""))
    if row.get("mode") == "httm":
        extra = {k: v for k, v in (row.get("sets") or {}).items() if k != "attention_sdpa"}
        name = f"ours HTTM, attention_sdpa={window_sdpa(row)}" + ("" if row.get("sets") else " (default)") + variant
        return name + "".join(f" [{k}={v}]" for k, v in sorted(extra.items()))
    return (f"ours {row.get('mode')}{variant}"
            + "".join(f" [{k}={v}]" for k, v in sorted((row.get("sets") or {}).items())))


def window_rows(results: Sequence[Dict]) -> List[Dict]:
    """Every row of the windows files, with its file and run environment, ordered by window size,
    then peer / dense / HTTM (the default before its variants), then date."""
    rows = []
    for res in results:
        for row in res.get("rows", []):
            rows.append({**row, "file": res["file"], "env": res.get("env", {})})

    def key(r: Dict):
        mode = r.get("mode")
        order = WINDOW_MODE_ORDER.index(mode) if mode in WINDOW_MODE_ORDER else len(WINDOW_MODE_ORDER)
        return (r.get("frames") or 0, order, bool(r.get("sets")), r["env"].get("date_utc", ""))
    return sorted(rows, key=key)


def is_default_httm(row: Dict) -> bool:
    return row.get("mode") == "httm" and not row.get("sets") and not row.get("error")


def same_run_pair(results: Sequence[Dict], frames: int, mode: str) -> Tuple[Optional[Dict], Optional[Dict]]:
    """(``mode`` row, default HTTM row) at ``frames`` from the newest file that has both."""
    best = (None, None)
    for res in sorted(results, key=lambda r: r.get("env", {}).get("date_utc", "")):
        rows = [r for r in res.get("rows", []) if r.get("frames") == frames and not r.get("error")]
        other = next((r for r in rows if r.get("mode") == mode and not r.get("sets")), None)
        httm = next((r for r in rows if is_default_httm(r)), None)
        if other is not None and httm is not None and other.get("p50_s") and httm.get("p50_s"):
            best = (other, httm)
    return best
