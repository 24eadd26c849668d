"""BENCHMARKS.md (and a PNG) from benchmark JSON files, and nothing else: a number that is not in
a file is "not measured yet". Later files win over earlier ones for the same (mode, frames).

    python -m httm_ros.bench report bench/results/*.json bench/results/windows/*.json --md BENCHMARKS.md \
        --png bench/results/latency.png --notes bench/NOTES.md

The first line of BENCHMARKS.md records the exact command. Sections: the node's regime (issue 14,
``httm-bench windows`` files), long sequences (issue 4: e2e and layer files), GPU tests, the
streaming core, the node, the fidelity proxy; then one section per kind of the issue-15..19 files,
recognised by their fields (``extra_kind``): the trained small model (model card, training log),
streaming v2 and window sizes (issue 16), weights dtype, loop closure, several processes; every
one is there without its file and says what is not measured; the notes, provenance.

Pieces: ``results`` (reading the files), ``markdown_tables``, ``targets`` (and anchors), ``plot``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..ros.core_config import CARD_SETTINGS
from . import node_stream, roofline
from .plot import plot
from .results import NOT_YET, load, load_side, ratio, window_mode
from .markdown_tables import (MERGING_SETTINGS, breakdown_table, fidelity_table, latency_table, layer_table,
                              memory_table, merging_attention_error, merging_layer_table, merging_metric,
                              merging_offline_table,
                              merging_streaming_table, node_table, pipeline_table, warm_table, windows_table)
from .targets import (WINDOW_FIRST_OVER_P50, WINDOW_P99_OVER_P50, limits, peer_oneshot_targets, targets,
                      window_targets)


def windows_section(results: List) -> List[str]:
    """The node's regime (issue 14): the windows table and its targets."""
    t = window_targets(results)
    measured = sorted({r.get("frames") for res in results for r in res.get("rows", [])})
    missing = [k for k in (24, 64, 128) if k not in measured]
    devices = " and ".join(sorted({device_short(res) for res in results}))
    return [
        f"## The node's regime: a stream of new windows (issue 14, measured on {devices})",
        "",
        "`httm-bench windows` (`bash bench/gpu_windows.sh`): N consecutive K-frame windows of one "
        "panning video, S new frames per window, so every window brings new content as in the node. "
        "Each mode runs in its own process: it builds the model, runs the node's start-up warm-up "
        "(`httm.warm_up`, one forward at the window size on other frames; the node's "
        "`warmup_forwards`), then times every window (host clock around a synchronised forward, "
        "camera + depth heads, VGGT-1B random weights, 518x392). Ours: fp32 weights, bf16 autocast; "
        "the FastVGGT code as its evaluation scripts build it (bf16 weights, its merging from block 0). "
        "p50/p90/p99/max and the spikes (> 1.3x p50) are over the windows after the first. "
        f"**Devices: {devices}** (the device column): compare seconds only between rows of one device "
        "and commit. Issue 14's baseline table was measured on an **H200**. "
        + (f"Not measured yet: {', '.join(f'{k}-frame' for k in missing)} windows." if missing else ""),
        "",
        windows_table(results),
        "",
        f"Targets (issue 14): HTTM p50 vs dense p50 from the same run; p99 <= {WINDOW_P99_OVER_P50}x p50 "
        f"and first window <= {WINDOW_FIRST_OVER_P50}x p50 for every HTTM row (the attention_sdpa=cudnn "
        "row is the shape-stability lever switched off).",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in t],
        "",
    ]


# ----------------------------------------------------------------------- issues 15-19: one section per kind
# Issue 17's stated tolerance for bfloat16 weights (docs/ROS.md "Weights dtype"): relative L2 error vs float32
DTYPE_TOLERANCE = {"pose_enc": 3e-2, "depth": 1e-2, "depth_conf": 1e-2}
LOOP_ATE_RATIO = 0.5             # issue 18: ATE with loops <= 50% of ATE without
NO_LOOP_SLACK = 1e-3             # issue 18: "no increase" without a loop, up to 0.1 % (float noise)
LAP_FRAMES = 460                 # bench/loops_trained.py: frames of one lap of its walk (0.03 m/frame)
KF_RATE_TARGET = 1.5             # issue 16: new keyframes/s >= 1.5x the dense 24/8 configuration
BASELINE_WINDOW = (24, 8)        # issue 16's baseline: the node's dense 24/8 chained windows before session 16
#: the node's VGGT-1B windows without a model card: (K, O, mode, merging) (ros.core_config.CARD_SETTINGS)
NODE_DEFAULT = tuple(CARD_SETTINGS[name][1] for name in ("window_size", "window_overlap", "window_mode", "merge_mode"))
STREAM_ACCEPTED_PCT, STREAM_ATE_PCT = 95.0, 5.0      # issue 15: streaming on held-out sequences
DISTRIBUTED_GPU_ROWS = [(g, f) for f in (1000, 2000, 4000) for g in (1, 2, 4)]      # issue 19's GPU table
KINDS = ("model_card", "train_log", "streaming", "window_size", "window_accuracy", "dtype", "loops", "loops_trained",
         "distributed_fidelity", "distributed", "compile", "merging_trained", "stream")


def extra_kind(data: Dict) -> Optional[str]:
    """The issue-15..19 result a JSON file holds, recognised by its fields (None: another kind)."""
    kind = data.get("kind")
    if kind in ("distributed", "distributed_fidelity", "merging_trained", "window_accuracy", "stream", "loops_trained"):
        return kind
    if kind == "e2e" and any(r.get("layout") for r in data.get("rows", [])):
        return "window_size"                              # httm-bench e2e --overlap O (anchored windows)
    if kind == "e2e" and "compile_tokenwise" in data:
        return "compile"                                  # eager vs --compile-tokenwise, one call
    checks = (("streaming", ("compare", "config")), ("loops", ("stream", "knobs")), ("dtype", ("dtypes", "float32")),
              ("loops_trained", ("stream_profile", "rows")),                 # bench/loops_trained.py before its kind
              ("model_card", ("heldout", "training")), ("train_log", ("entries", "meta")))
    return next((name for name, keys in checks if not kind and all(k in data for k in keys)), None)


def load_extra(files: Sequence[Path]) -> Tuple[Dict[str, List[Dict]], List[Path]]:
    """-> ({kind: [results, each with its "file" name]} for the kinds of ``KINDS``, the other files)."""
    out: Dict[str, List[Dict]] = {k: [] for k in KINDS}
    others = []
    for path, data in _read_json(files):
        kind = extra_kind(data)
        if kind:
            out[kind].append({**data, "file": path.name})
        else:
            others.append(path)
    return out, others


def _read_json(files: Sequence[Path]) -> Iterator[Tuple[Path, Dict]]:
    """(path, parsed JSON) of every existing file among ``files``."""
    for path in (Path(f) for f in files if Path(f).is_file()):
        yield path, json.loads(path.read_text())


def e2e_results(files: Sequence[Path]) -> List[Dict]:
    """The ``httm-bench e2e`` files among ``files`` (kind "e2e"), read."""
    return [{**data, "file": path.name} for path, data in _read_json(files)
            if isinstance(data, dict) and data.get("kind") == "e2e"]


def env_of(res: Dict) -> Dict:
    """A result's provenance: ``env`` / ``environment``, or a model card's training record."""
    if res.get("env") or res.get("environment"):
        return res.get("env") or res.get("environment")
    train = res.get("training") or (res.get("meta") or {}).get("training") or {}
    return {"commit": train.get("commit"), "device": train.get("device"), "command": train.get("command")}


def source(res: Dict) -> str:
    env = env_of(res)
    return (f"Source: `{res['file']}`: `{env.get('command')}` at commit {str(env.get('commit'))[:7]} on "
            f"{env.get('device')}" + (f", {env['date_utc']}" if env.get("date_utc") else "") + ".")


def num(x, fmt: str = "{:.3f}") -> str:
    """A number from a file, or "-" where the file has none (NaN included)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def verdict(ok: Optional[bool]) -> str:
    return NOT_YET if ok is None else ("met" if ok else "MISSED")


def md_row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_head(*names: str) -> List[str]:
    return [md_row(*names), "|" + "---|" * len(names)]


def mib(nbytes) -> str:
    return num(None if nbytes is None else nbytes / 2**20, "{:.0f}")


def target_rows(rows: List[Tuple[str, str, str]]) -> List[str]:
    return ["| target | measured | verdict |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows], ""]


def missing(text: str) -> List[str]:
    return [f"{NOT_YET}: {text}", ""]


def result_section(title: str, results: List[Dict], missing_text: str,
                   tables: Callable[[Dict], List[str]], targets: Callable[[Dict], List[Tuple[str, str, str]]],
                   targets_title: str, open_targets: Sequence[Tuple[str, str, str]] = ()) -> List[str]:
    """One issue's section: ``title``, per result file its ``tables`` (or ``missing_text`` when
    there is none), then the targets of every file plus ``open_targets`` under ``targets_title``."""
    lines = [f"## {title}", ""]
    if not results:
        lines += missing(missing_text)
    rows: List[Tuple[str, str, str]] = []
    for res in results:
        lines += tables(res)
        rows += targets(res)
    return lines + [targets_title, ""] + target_rows(rows + list(open_targets))


def states(seq: List[str]) -> str:
    """State sequence, a repeated LOST -> ... cycle written once with its count."""
    head, rest = seq[:2], seq[2:]
    groups = [tuple(rest[i:i + 3]) for i in range(0, len(rest), 3)]
    if len(groups) > 1 and len(rest) % 3 == 0 and len(set(groups)) == 1:
        return " -> ".join(head) + f" -> ({' -> '.join(groups[0])}) x{len(groups)}"
    return " -> ".join(seq)


# ------------------------------------------------------------------------------------- issue 15
def training_section(cards: List[Dict], logs: List[Dict], streams: List[Dict],
                     merging: Sequence[Dict] = ()) -> List[str]:
    lines = ["## The small model trained here: httm-vggt-synth (issue 15)", ""]
    if not cards:
        lines += missing("no model card (`httm-train` writes httm-vggt-synth.json beside the weights)")
    for card in cards:
        lines += training_card(card)
    for log in logs:
        entries = log.get("entries", [])
        lines += [f"Training log `{log['file']}`: {len(entries)} entries, steps "
                  f"{num(entries[0].get('step') if entries else None, '{}')} to "
                  f"{num(entries[-1].get('step') if entries else None, '{}')}, loss "
                  f"{num(entries[0].get('loss') if entries else None)} -> "
                  f"{num(entries[-1].get('loss') if entries else None)}.", ""]
    checkpoint = [s for s in streams if (s.get("config") or {}).get("predictor") == "checkpoint"]
    t = [(f"{name} {want}", NOT_YET if got is None else num(got), verdict(ok))
         for name, want, got, ok in heldout_targets(cards)]
    t += streaming_model_targets(checkpoint)
    t.append(("accuracy cost of merging on trained attention (dense vs uniform vs HTTM)",
              ", ".join(f"`{res['file']}`" for res in merging) or NOT_YET,
              "measured (section \"The accuracy cost of merging on trained attention\"; no numeric target)" if merging
              else f"{NOT_YET} (no result file: needs the trained model's eval with merging, `httm-eval merging`)"))
    return lines + ["Targets (issue 15; held-out set, `httm-eval`, dense):", ""] + target_rows(t)


def training_card(card: Dict) -> List[str]:
    train, held = card.get("training") or {}, card.get("heldout") or {}
    loss = train.get("loss") or {}
    lines = [f"{card.get('name')}: {card.get('parameters')} parameters, {card.get('dtype')} weights, input "
             f"{card.get('image_hw')}. {card.get('statement', '')}",
             "",
             f"Training: `{train.get('command')}` at commit {train.get('commit')} on {train.get('device')}: "
             f"{train.get('steps')} steps of a {train.get('schedule_steps')}-step schedule "
             f"({'complete' if train.get('complete') else 'not complete'}), {train.get('seen_frames')} frames seen, "
             f"{num(train.get('elapsed_s'), '{:.0f}')} s, renderer {num(train.get('renderer_frames_per_s'), '{:.0f}')} "
             f"frames/s. Held-out: {held.get('split')}, {held.get('frames')} frames per clip ({card['file']}).",
             "",
             "| loss | first | last | min |", "|---|---|---|---|"]
    lines += [md_row(k, *(num(v.get(x), "{:.4f}") for x in ("first", "last", "min"))) for k, v in loss.items()]
    lines += ["", "| held-out clip (seed) | path | hfov deg | AbsRel | delta<1.25 | rot. error median deg | ATE % |",
              "|---|---|---|---|---|---|---|"]
    lines += [md_row(c.get("scene_seed"), c.get("kind"), num(c.get("hfov_deg"), "{:.1f}"), num(c.get("abs_rel")),
                     num(c.get("delta_1_25")), num(c.get("rot_err_median_deg"), "{:.2f}"),
                     num(c.get("ate_percent"), "{:.2f}")) for c in held.get("clips", [])]
    return lines + [""]


def heldout_targets(cards: List[Dict]):
    """(metric, target text, measured, met?) from a model card's held-out summary and targets."""
    names = {"abs_rel": "depth AbsRel", "delta_1_25": "depth delta<1.25", "rot_err_median_deg":
             "relative rotation error median (deg)", "ate_percent": "ATE (% of trajectory, Sim(3))"}
    card = cards[-1] if cards else {}
    held = card.get("heldout") or {}
    wanted = held.get("targets") or {"abs_rel": "<= 0.08", "delta_1_25": ">= 0.93", "rot_err_median_deg": "<= 2.0",
                                     "ate_percent": "<= 3.0"}
    for key, want in wanted.items():
        got = (held.get("summary") or {}).get(key)
        op, bound = want.split()
        ok = None if got is None else (got <= float(bound) if op == "<=" else got >= float(bound))
        yield names.get(key, key), want, got, ok


# What ``httm-bench streaming`` ran before --trajectories / --min-motion existed (the demo's orbit;
# KeyframeConfig's min_motion, also the node's default keyframe_min_motion): files without them.
STREAM_PATH, STREAM_MIN_MOTION = "orbit", 0.03


def stream_setting(cfg: Dict, profile: Optional[Dict] = None, mode: Optional[str] = None) -> str:
    """'K=24/O=8, min_motion 0.03' of an ``httm-bench streaming`` file's config, '(node default)' when
    these are the node's windows and merging for it (and ``mode`` its window mode, if given): a checkpoint card's
    ``measured_with`` (``profile``, the file's stream_profile; the node's 0 / auto window parameters)
    or else NODE_DEFAULT."""
    motion = cfg.get("min_motion", STREAM_MIN_MOTION)
    measured = (profile or {}).get("measured_with") or {}
    if measured:
        policy_motion = 0.0 if measured.get("keyframe_policy") == "every" else STREAM_MIN_MOTION
        default = (measured.get("window_size"), measured.get("window_overlap"), policy_motion)
        default_mode = measured.get("window_mode", "chained")
        same_merge = cfg.get("merge", "none") == measured.get("merge_mode", cfg.get("merge", "none"))
    else:
        default, default_mode, same_merge = (*NODE_DEFAULT[:2], STREAM_MIN_MOTION), NODE_DEFAULT[2], True
    node = (cfg.get("window"), cfg.get("overlap"), motion) == default and mode in (None, default_mode) and same_merge
    return f"K={cfg.get('window')}/O={cfg.get('overlap')}, min_motion {motion:g}" + (" (node default)" if node else "")


def seed_profile(res: Dict) -> str:
    """', seed 2, card checks' of an ``httm-bench streaming --predictor checkpoint`` file (which held-out
    scene; whether the checkpoint card's stream_profile set the checks); '' for the oracle's."""
    cfg = res.get("config") or {}
    if cfg.get("predictor") != "checkpoint":
        return ""
    merge = cfg.get("merge", "none")
    return (f", seed {cfg.get('seed')}, " + ("card checks" if res.get("stream_profile") else "library checks")
            + (f", {merge} merging" if merge != "none" else ""))


def stream_path(row: Dict) -> str:
    return row.get("trajectory", STREAM_PATH)


def accepted_pct(row: Dict) -> Optional[float]:
    return 100.0 * row["accepted"] / row["windows"] if row.get("windows") else None


def covers(row: Dict) -> bool:
    """The stream's map covers it (>= STREAM_ACCEPTED_PCT of its windows accepted): only then is its
    ATE, which is segment 0's, the ATE of the stream."""
    acc = accepted_pct(row)
    return acc is not None and acc >= STREAM_ACCEPTED_PCT


def streaming_model_targets(results: List[Dict]) -> List[Tuple[str, str, str]]:
    """Issue 15's streaming targets from ``httm-bench streaming --predictor checkpoint`` files."""
    rows = [(r, stream_setting(res.get("config") or {}, res.get("stream_profile"), r.get("mode")) + seed_profile(res))
            for res in results
            for r in res.get("compare", []) if r.get("frames") == 300]
    if not rows:
        why = f"{NOT_YET} (no `httm-bench streaming --predictor checkpoint` file)"
        return [(f"streaming, 300 frames: windows accepted >= {STREAM_ACCEPTED_PCT:.0f} %", NOT_YET, why),
                (f"streaming, 300 frames: ATE <= {STREAM_ATE_PCT:.0f} % of the trajectory", NOT_YET, why)]
    out = []
    for r, setting in rows:
        where = f"streaming, 300 frames, {stream_path(r)}, {setting}, {r['mode']}"
        acc = accepted_pct(r)
        out.append((f"{where}: windows accepted >= {STREAM_ACCEPTED_PCT:.0f} %",
                    num(acc, "{:.1f} %"), verdict(None if acc is None else acc >= STREAM_ACCEPTED_PCT)))
        ate, covered = r.get("ate_pct"), covers(r)
        out.append((f"{where}: ATE <= {STREAM_ATE_PCT:.0f} %",
                    num(ate, "{:.3f} %") + ("" if covered or ate is None else
                                           f" (segment 0 only: {r.get('keyframes')} keyframes)"),
                    verdict(None if ate is None else ate <= STREAM_ATE_PCT and covered)))
    return out


# ------------------------------------------------------------------------------------- issue 15: merging, trained
# (key, name, +1 higher is better / -1 lower is better) of the held-out summary of ``httm-eval merging``
MERGING_METRICS = (("abs_rel", "AbsRel", -1), ("delta_1_25", "delta<1.25", 1), ("rot_err_median_deg", "rot. error", -1),
                   ("ate_percent", "ATE", -1), ("acc", "Acc.", -1), ("comp", "Comp.", -1))


def merging_section(results: List[Dict]) -> List[str]:
    """Issue 15's accuracy cost of merging on trained attention (``httm-eval merging`` files): the
    headline accuracy evidence, above the random-weight fidelity proxy."""
    lines = ["## The accuracy cost of merging on trained attention (issue 15): dense vs uniform vs HTTM", ""]
    if not results:
        return lines + missing("no `httm-eval merging` file (bench/results/merging_trained/)")
    for res in results:
        lines += merging_tables(res)
    return lines


def merging_tables(res: Dict) -> List[str]:
    opts = res.get("eval_options") or {}
    stream = res.get("streaming_setup") or {}
    hw = res.get("image_hw") or ["?", "?"]
    lines = [f"Setup: {res.get('model')} ({res.get('weights')}, sha256 {str(res.get('weights_sha256'))[:12]}), "
             f"{hw[1]}x{hw[0]} input, float32 on the CPU; {res.get('clips')} {res.get('split')}, each clip one window "
             f"of {', '.join(str(f) for f in res.get('frames', []))} frames (one forward over all frames, the paper's "
             "setting). Settings: dense; uniform = FastVGGT's merging (`UniformMergeConfig()`, its released defaults); "
             "HTTM at the paper's ratios (`HTTMConfig()`: Q 20 %, K/V 30 % nominal, regions 128 positions x 30 "
             "frames); HTTM at the uniform baseline's budget (its Q and K/V merge ratios calibrated so that its "
             "*measured* kept fractions equal the uniform baseline's at that frame count). Q / K/V kept: measured, "
             "mean over layers, heads and clips. AbsRel / delta<1.25: per-window median scaling; rotation error: "
             "median over all frame pairs of all clips; ATE: % of the path after Sim(3) (the model card's held-out "
             f"metrics); Acc. / Comp.: mean nearest-neighbour distances (m) of the confident points (>= the "
             f"{opts.get('conf_percentile')}th confidence percentile) and the exact rendered depth after Sim(3) + ICP "
             "(`httm-eval`'s metrics), per clip, then the median over the clips (on some clips the Sim(3) from the "
             "predicted cameras fails for every setting and the distances reach metres: the per-clip values are in the "
             "JSON); attention rel. err.: ||merged - dense|| / ||dense|| of each global layer's "
             "attention output on the same dense input (the fidelity proxy's metric with the trained weights), "
             "mean over the layers. " + source(res), "",
             *merging_offline_table(res), "", "What the numbers show:", ""]
    lines += [f"- {text}" for text in merging_findings(res)]
    lines += ["", "Per-layer attention error vs dense (mean over the clips):", "", *merging_layer_table(res), ""]
    if res.get("streaming"):
        lines += [f"Streaming: the same settings through the sliding-window pipeline (`StreamingReconstructor`, "
                  f"K={stream.get('window')} / O={stream.get('overlap')}, every frame a keyframe; HTTM's budget "
                  f"matched on {stream.get('window')}-frame windows) on {stream.get('clips')} clip(s) of "
                  f"{stream.get('frames')} frames; ATE over the keyframes of the accepted windows, clouds = the "
                  "stream's voxel map.", "", *merging_streaming_table(res), ""]
        rejected = [r for r in res["streaming"] if r.get("rejected")]
        if rejected:
            lines += [f"{len(rejected)} of {len(res['streaming'])} streams had windows rejected by the pipeline's "
                      "alignment check (" + ", ".join(f"{MERGING_SETTINGS.get(r.get('setting'), r.get('setting'))} "
                                                      f"{r['rejected']} of {r.get('windows')}" for r in rejected)
                      + "): their rows rest on the accepted windows only.", ""]
    else:
        lines += missing("the streaming pipeline (`httm-eval merging --streaming-frames N`)")
    return lines


def merging_findings(res: Dict) -> List[str]:
    """Plain comparisons of the file's numbers: HTTM against the uniform baseline at the same kept
    budget and at the paper's ratios, per frame count (better = lower, delta<1.25 higher)."""
    by = {(r.get("frames"), r.get("setting")): r for r in res.get("offline", [])}
    out = []
    for frames in sorted({f for f, _ in by}):
        dense, uni = by.get((frames, "dense")), by.get((frames, "uniform"))
        if not (dense and uni):
            continue
        for setting, what in (("httm_matched", "at the same kept budget"), ("httm", "at the paper's ratios")):
            h = by.get((frames, setting))
            if not h:
                continue
            keys = [key for key, _, _ in MERGING_METRICS] + ["kept_q", "kept_kv"]
            hs, us, ds = ({key: merging_metric(r, key) for key in keys} for r in (h, uni, dense))
            better = [name for key, name, sign in MERGING_METRICS
                      if None not in (hs.get(key), us.get(key)) and sign * (hs[key] - us[key]) > 0]
            clips = [sum(a[key] < b[key] for a, b in zip(h.get("clips", []), uni.get("clips", [])))
                     for key in ("abs_rel", "ate_percent")]
            cost = lambda key, s: s.get(key) - ds.get(key) if None not in (s.get(key), ds.get(key)) else None  # noqa: E731
            err_h, err_u = (merging_attention_error(res, frames, x) for x in (setting, "uniform"))
            out.append(
                f"{frames} frames, {what} (HTTM keeps {num(hs.get('kept_q'))} of Q / "
                f"{num(hs.get('kept_kv'))} of K/V, uniform {num(us.get('kept_q'))}): HTTM better than uniform on "
                f"{len(better)} of {len(MERGING_METRICS)} metrics" + (f" ({', '.join(better)})" if better else "")
                + f". Cost over dense, HTTM vs uniform: AbsRel {num(cost('abs_rel', hs), '{:+.4f}')} vs "
                f"{num(cost('abs_rel', us), '{:+.4f}')}, rotation error {num(cost('rot_err_median_deg', hs), '{:+.2f}')} "
                f"vs {num(cost('rot_err_median_deg', us), '{:+.2f}')} deg, ATE {num(cost('ate_percent', hs), '{:+.2f}')} "
                f"vs {num(cost('ate_percent', us), '{:+.2f}')} points, Acc. {num(cost('acc', hs), '{:+.4f}')} vs "
                f"{num(cost('acc', us), '{:+.4f}')} m, Comp. {num(cost('comp', hs), '{:+.4f}')} vs "
                f"{num(cost('comp', us), '{:+.4f}')} m; lower AbsRel than uniform on {clips[0]} of "
                f"{len(h.get('clips', []))} clips, lower ATE on {clips[1]}; attention error {num(err_h, '{:.4f}')} vs "
                f"{num(err_u, '{:.4f}')}.")
    if out:
        out.append(f"Scope: {res.get('clips')} held-out synthetic clips, one deterministic run per clip and setting "
                   "(no repeats, no confidence intervals); a small VGGT trained on synthetic rooms only (not "
                   "VGGT-1B: the paper measures VGGT-1B at 518 px, 1041 tokens per frame; here "
                   f"{(res.get('image_hw') or [0, 0])[0] // 14 * ((res.get('image_hw') or [0, 0])[1] // 14)} patches "
                   "per frame), and model times on a 2-core CPU (not a speed result).")
    return out


# ------------------------------------------------------------------------------------- issue 16
def streaming_section(results: List[Dict]) -> List[str]:
    checked = [s for s in results if (s.get("config") or {}).get("predictor") == "checkpoint"]
    open_targets = [] if checked else [
        ("trained model, held-out 300/1000 frames: anchored ATE <= chained ATE, within issue 15's targets",
         NOT_YET, f"{NOT_YET} (needs `--predictor checkpoint` with the trained model)")]
    return result_section("Streaming core v2: anchored vs chained windows, tracking, relocalisation (issue 16)",
                          results, "no `httm-bench streaming` file (bench/results/streaming/)", streaming_tables,
                          streaming_targets, "Targets (issue 16, \"Done means\"):", open_targets)


def streaming_tables(res: Dict) -> List[str]:
    cfg = res.get("config") or {}
    f = lambda r, k, fmt="{:.3f}": num(r.get(k), fmt)                    # noqa: E731
    lines = [f"Setup: predictor `{cfg.get('predictor')}`" + (f" ({cfg['checkpoint']})" if cfg.get("checkpoint") else
             f" (noise {cfg.get('noise')}, every {cfg.get('corrupt_every')}th model call corrupted)")
             + f", {stream_setting(cfg, res.get('stream_profile'))}, seed {cfg.get('seed')}"
             + (f", {cfg['merge']} merging" if cfg.get("merge", "none") != "none" else "")
             + ("; checks from the card's stream_profile " + json.dumps(res["stream_profile"]) if res.get("stream_profile")
                else "") + "; ATE = Sim(3)-aligned "
             "RMSE of the keyframe centres over the path length, final drift = the last keyframe's error with the "
             "Sim(3) of the first 10 %, scale drift = |log| ratio of the last and first 10 %'s scales "
             "(docs/STREAMING.md). " + source(res), "",
             *md_head("frames", "path", "mode", "ATE % (segment 0)", "final drift %", "scale drift",
                      "segments (keyframes)", "accepted / windows", "partial",
                      "rejected", "keyframes dropped", "relocalisations", "states", "wall s")]
    lines += [f"| {r.get('frames')} | {stream_path(r)} | {r.get('mode')} | {f(r, 'ate_pct')} | {f(r, 'final_drift_pct')} | "
              f"{f(r, 'scale_drift', '{:.4f}')} | {segments(r)} | {r.get('accepted')} / {r.get('windows')} | "
              f"{r.get('partial')} | "
              f"{r.get('rejected')} | {r.get('keyframes_dropped')} | {r.get('relocalisations')} | "
              f"{states(r.get('states', []))} | {f(r, 'wall_s', '{:.1f}')} |" for r in res.get("compare", [])]
    lines += ["", "| scenario | mode | frames | states | segments (keyframes) | other-room keyframes per segment | "
              "ATE segment 0 % |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('scenario')} | {r.get('mode')} | {r.get('frames')} | {states(r.get('states', []))} | "
              f"{segments(r)} | "
              f"{', '.join(str(s.get('other_room_keyframes')) for s in r.get('segments', []))} | {f(r, 'ate_pct')} |"
              for r in res.get("failure", [])]
    if not res.get("failure"):
        lines += missing("the another-room scenarios (run without `--no-failure`)")
    return lines + [""]


def segments(row: Dict) -> str:
    """'2 (78, 12)': a streaming row's map segments and their keyframes (ATE is segment 0's)."""
    segs = row.get("segments", [])
    return f"{len(segs)} ({', '.join(str(s.get('keyframes')) for s in segs)})"


def streaming_targets(res: Dict) -> List[Tuple[str, str, str]]:
    """Anchored ATE <= chained ATE per length and path, the anchored stream covered (``covers``); the
    another-room scenarios' state sequences."""
    pred = f"{(res.get('config') or {}).get('predictor')}{seed_profile(res)}"
    by = {(r.get("frames"), stream_path(r), r.get("mode")): r for r in res.get("compare", [])}
    out = []
    for frames, path in sorted({(f, t) for f, t, _ in by}):
        a, c = by.get((frames, path, "anchored")), by.get((frames, path, "chained"))
        ok = None if not (a and c) else a["ate_pct"] <= c["ate_pct"] and covers(a)   # segment 0's ATE: a lost
        got = f"{a['ate_pct']:.3f} vs {c['ate_pct']:.3f} %" if a and c else NOT_YET    # anchored stream cannot win
        if a and c and not covers(a):
            got += f" (anchored: {a['accepted']} of {a['windows']} windows accepted)"
        out.append((f"anchored ATE <= chained ATE @{frames} frames, {path} ({pred})", got, verdict(ok)))
    for r in res.get("failure", []):
        segs = r.get("segments", [])
        clean = bool(segs) and segs[0].get("other_room_keyframes") == 0
        if r.get("scenario") == "back_after_3s":
            ok = r.get("states", [])[1:4] == ["TRACKING", "LOST", "RELOCALISED"] and len(segs) == 1 and clean
            out.append((f"3 s of another room: TRACKING -> LOST -> RELOCALISED, one map, no other-room keyframe "
                        f"({r.get('mode')}, {pred})", f"{states(r.get('states', []))}; {len(segs)} segment(s)",
                        verdict(ok)))
        elif r.get("scenario") == "never_back":
            ok = "NEW_SEGMENT" in r.get("states", []) and len(segs) > 1 and clean
            out.append((f"never back: NEW_SEGMENT, the other room kept apart ({r.get('mode')}, {pred})",
                        f"{states(r.get('states', []))}; {len(segs)} segment(s)", verdict(ok)))
    return out


def window_size_section(results: List[Dict], accuracy: Sequence[Dict] = (), windows: Sequence[Dict] = ()) -> List[str]:
    rate_lines, rate_targets = keyframe_rate_layouts(windows)
    open_targets = list(rate_targets)
    if not any(res.get("config") == "1b" for res in results):
        open_targets.append((f"VGGT-1B at 518x392 on the H200: >= {KF_RATE_TARGET}x the new keyframes/s of dense "
                             f"{BASELINE_WINDOW[0]}/{BASELINE_WINDOW[1]}", NOT_YET,
                             f"{NOT_YET} (GPU run: `PART=3 bash bench/gpu_next.sh`)"))
    if accuracy:
        open_targets += window_accuracy_targets(accuracy) + node_default_target(accuracy, windows)
    else:
        open_targets.append(("at equal or better ATE on the held-out sequences", NOT_YET,
                             f"{NOT_YET} (`python bench/window_accuracy.py`)"))
    lines = result_section("Window sizes where HTTM pays (issue 16)", results,
                           "no window-size file (`httm-bench e2e --overlap 8 --frames 16 24 32 48 64 96 128`)",
                           window_size_table, window_size_targets, "Targets (issue 16):", open_targets)
    return lines + rate_lines + (window_accuracy_table(accuracy) if accuracy else [])


def rate_groups(windows: Sequence[Dict]) -> Dict[Tuple, List[Tuple[Dict, Dict]]]:
    """``httm-bench windows`` rows (dense / httm, timed, with new frames) grouped by commit, device
    and model setting (weights, compiled parts, heads dtype, merging options) -> {key: [(file, row)]}."""
    groups: Dict[Tuple, List[Tuple[Dict, Dict]]] = {}
    for res in windows:
        env = env_of(res)
        for r in res.get("rows", []):
            if r.get("mode") in ("dense", "httm") and r.get("p50_s") and r.get("new"):
                setting = (r.get("weights_dtype"), bool(r.get("compile_tokenwise")), bool(r.get("compile_heads")),
                           r.get("dpt_dtype"), tuple(sorted((r.get("sets") or {}).items())))
                groups.setdefault((env.get("commit"), device_short(res), setting), []).append((res, r))
    return groups


def keyframe_rate_layouts(windows: Sequence[Dict]) -> Tuple[List[str], List[Tuple[str, str, str]]]:
    """Issue 16's throughput on the GPU: ``httm-bench windows`` rows of one commit, device and model
    setting (weights, compiled parts, heads dtype, merging options) with at least three (K, new)
    layouts (``PART=10``), new keyframes/s = new / p50, each against dense K=24 with 16 new
    (today's 24/8) of the same group -> (table lines, target rows)."""
    groups = rate_groups(windows)
    lines: List[str] = []
    targets: List[Tuple[str, str, str]] = []
    for (commit, device, _), rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
        base = next((r for _, r in rows if r["mode"] == "dense" and (r["frames"], r["new"]) == (24, 16)), None)
        if base is None or len({(r["frames"], r["new"]) for _, r in rows}) < 3:
            continue
        rate = lambda r: r["new"] / r["p50_s"]                                # noqa: E731
        lines += [f"### New keyframes per second on the GPU ({device}, {str(commit)[:7]}, {window_mode(base)})", "",
                  "`httm-bench windows` (`bash bench/gpu_next.sh`; `PART=10` has the layouts with fewer known "
                  "frames): consecutive K-frame windows of new "
                  "content, K - new frames known (the anchored layout's anchor and context), VGGT-1B random "
                  "weights at 518x392, one model setting (named above); new keyframes/s = new / p50. Time only: "
                  "the accuracy of each layout is the trained model's table below (merging's accuracy on "
                  "VGGT-1B cannot be measured without its checkpoint).", "",
                  *md_head("mode", "K", "new", "known", "p50 s", "p99 s", "new kf/s", "vs dense 24/8", "file")]
        for res, r in sorted(rows, key=lambda x: (x[1]["frames"], x[1]["new"], x[1]["mode"])):
            lines.append(md_row(r["mode"], r["frames"], r["new"], r["frames"] - r["new"], num(r["p50_s"]),
                                num(r.get("p99_s")), num(rate(r), "{:.1f}"), num(rate(r) / rate(base), "{:.2f}x"),
                                res["file"]))
        best = max((r for _, r in rows), key=rate)
        targets.append((f">= {KF_RATE_TARGET}x the new keyframes/s of dense 24/8, time only "
                        f"({device}, VGGT-1B random weights): the best layout",
                        f"{best['mode']} {best['frames']}/{best['frames'] - best['new']}: "
                        f"{rate(best) / rate(base):.2f}x", verdict(rate(best) / rate(base) >= KF_RATE_TARGET)))
        lines.append("")
    return lines, targets


def _accuracy_layouts(results: Sequence[Dict]) -> Dict[Tuple, Dict[Tuple, Dict]]:
    """{(K, O, mode, merge): {(seed, trajectory): row}} over ``bench/window_accuracy.py`` files."""
    out: Dict[Tuple, Dict[Tuple, Dict]] = {}
    for res in results:
        for r in res.get("rows", []):
            out.setdefault((r["window"], r["overlap"], r["mode"], r["merge"]), {})[(r["seed"], r["trajectory"])] = r
    return out


@functools.lru_cache(maxsize=1)
def shipped_networks() -> Dict[str, str]:
    """{sha256: model card name} of the networks shipped in httm_ros/weights/ (hashed once)."""
    from ..provenance import file_sha256
    from ..vggt.checkpoint import read_model_card
    from ..weights import FOLDER

    return {file_sha256(path): str((read_model_card(path) or {}).get("name") or path.stem)
            for path in sorted(FOLDER.glob("*.safetensors"))}


def accuracy_networks(results: Sequence[Dict]) -> List[Tuple[str, List[Dict]]]:
    """``bench/window_accuracy.py`` files grouped by network, in the order given -> [(name, files)];
    the name is the shipped card's for a known sha256, "network <its first 12 digits> (not shipped)"
    for another, and the weights file's stem for files from before the sha256 was recorded."""
    names = shipped_networks()
    groups: Dict[str, List[Dict]] = {}
    for res in results:
        cfg = res.get("config") or {}
        sha = cfg.get("weights_sha256")
        if sha:
            name = names.get(sha, f"network {str(sha)[:12]} (not shipped)")
        else:
            name = Path(str(cfg.get("weights") or "?")).stem
        groups.setdefault(name, []).append(res)
    return list(groups.items())


def _layout_name(key: Tuple) -> str:
    k, o, mode, merge = key
    return f"{k}/{o} {mode}, {'dense' if merge == 'none' else merge}"


def _mean(xs: Sequence[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _rate(rows: Dict[Tuple, Dict]) -> Optional[float]:
    """A layout's mean new keyframes per second of model time over its streams."""
    return _mean([r.get("new_kf_per_model_s") for r in rows.values()])


def window_accuracy_table(results: Sequence[Dict]) -> List[str]:
    """Issue 16's accuracy side: every layout over the same held-out streams with each trained
    network; the baseline is the first network's first layout (dense 24/8 chained)."""
    networks = accuracy_networks(results)
    first = _accuracy_layouts(networks[0][1])
    base_key = next(iter(first), None)
    base = first.get(base_key, {})
    lines = ["### Window sizes with the trained model: accuracy and model time (issue 16)", "",
             "`python bench/window_accuracy.py --seeds S [--weights W]`: a trained network on held-out "
             "300-frame streams (scenes = seeds, walk and orbit), every frame a keyframe, the card's checks; "
             "each layout runs the same streams. covered = >= 95% of windows accepted (only then is the ATE the "
             "stream's); new kf/s = new keyframes per second of the predictor's time in the stream, on "
             f"{device_short(results[0])} (one thread per process), against the same table's first layout (the "
             "files of one table ran side by side; other tables may have run more processes at once). ATE "
             f"baseline (every table): {networks[0][0]}, {_layout_name(base_key) if base_key else '-'}, issue 16's.",
             ""]
    for name, files in networks:
        commits = sorted({str(env_of(res).get("commit"))[:7] for res in files})
        names = ", ".join(f"`{res['file']}`" for res in files)
        lines += [f"**{name}** ({names}; {', '.join(commits)})", "",
                  *md_head("layout (K/O, mode, merging)", "streams covered", "windows accepted", "ATE mean (covered)",
                           "ATE max (covered)", "ATE mean (all)", "ATE <= baseline's (streams both cover)", "new kf/s",
                           "vs first layout")]
        layouts = _accuracy_layouts(files)
        first_rate = _rate(next(iter(layouts.values()), {}))
        for key, rows in layouts.items():
            cov = {s: r for s, r in rows.items() if covers(r)}
            both = [s for s in cov if s in base and covers(base[s])]
            better = sum(cov[s]["ate_pct"] <= base[s]["ate_pct"] for s in both)
            rate = _rate(rows)
            lines.append(md_row(_layout_name(key), f"{len(cov)} of {len(rows)}",
                                f"{sum(r['accepted'] for r in rows.values())}/{sum(r['windows'] for r in rows.values())}",
                                num(_mean([r["ate_pct"] for r in cov.values()]), "{:.2f} %"),
                                num(max((r["ate_pct"] for r in cov.values()), default=None), "{:.2f} %"),
                                num(_mean([r["ate_pct"] for r in rows.values()]), "{:.2f} %"),
                                f"{better} of {len(both)}", num(rate, "{:.1f}"),
                                f"{rate / first_rate:.2f}x" if rate and first_rate else NOT_YET))
        lines.append("")
    return lines


def window_accuracy_targets(results: Sequence[Dict]) -> List[Tuple[str, str, str]]:
    """>= KF_RATE_TARGET x the baseline's new kf/s at equal or better ATE, per anchored layout of the
    first network: its mean rate over the baseline's, and whether it covers every stream the
    baseline covers with a mean ATE over those streams at most the baseline's (CPU, trained model)."""
    layouts = _accuracy_layouts(accuracy_networks(results)[0][1])
    keys = list(layouts)
    if not keys:
        return []
    base = layouts[keys[0]]
    base_rate = _rate(base)
    shared = [s for s, r in base.items() if covers(r)]
    base_ate = _mean([base[s]["ate_pct"] for s in shared])
    out = []
    for key in keys[1:]:
        rows = layouts[key]
        rate = _rate(rows) / base_rate
        holds = all(s in rows and covers(rows[s]) for s in shared)
        ate_here = _mean([rows[s]["ate_pct"] for s in shared if s in rows])
        ok = rate >= KF_RATE_TARGET and holds and ate_here is not None and ate_here <= base_ate
        out.append((f">= {KF_RATE_TARGET}x the new keyframes/s of {_layout_name(keys[0])} at equal or better ATE: "
                    f"{_layout_name(key)} (synth, CPU)",
                    f"{rate:.2f}x; ATE {num(ate_here, '{:.2f}')} vs {num(base_ate, '{:.2f}')} % on the "
                    f"{len(shared)} streams the baseline covers" + ("" if holds else ", not all covered"),
                    verdict(ok)))
    return out


def _pick(rows: Sequence[Tuple[Dict, Dict]], mode: str, frames: int, new: int) -> Optional[Tuple[Dict, Dict]]:
    """The first (file, row) of ``rate_groups`` rows with this mode, window size and new frames."""
    return next(((res, r) for res, r in rows if (r["mode"], r["frames"], r["new"]) == (mode, frames, new)), None)


def node_default_target(accuracy: Sequence[Dict], windows: Sequence[Dict]) -> List[Tuple[str, str, str]]:
    """Issue 16's target for the node's default layout (NODE_DEFAULT): its new keyframes/s on the GPU
    (``httm-bench windows`` with K - new known frames, same group as dense 24/8 with 16 new) and its
    mean ATE over all held-out streams with the network that runs it (the last shipped network
    measured in that layout: httm-vggt-synth-merge) against the baseline (the first network, dense
    24/8 chained), with the windows each accepted. [] without both sides."""
    k, o, _, merge = NODE_DEFAULT
    gpu = None                                   # (file, default-layout row, dense 24/8 row) of one group
    for rows in rate_groups(windows).values():
        here = _pick(rows, merge, k, k - o)
        dense = _pick(rows, "dense", BASELINE_WINDOW[0], BASELINE_WINDOW[0] - BASELINE_WINDOW[1])
        if here and dense:
            gpu = (*here, dense[1])
            break
    networks = accuracy_networks(accuracy) if accuracy else []
    if not networks or gpu is None:
        return []
    base_layouts = _accuracy_layouts(networks[0][1])
    base_key = next(iter(base_layouts))
    base = base_layouts[base_key]
    shipped = set(shipped_networks().values())
    runs = [(name, _accuracy_layouts(files).get(NODE_DEFAULT)) for name, files in networks if name in shipped]
    runs = [(name, rows) for name, rows in runs if rows]
    if not runs:
        return []
    name, rows = runs[-1]
    streams = [s for s in base if s in rows]
    ate, base_ate = _mean([rows[s]["ate_pct"] for s in streams]), _mean([base[s]["ate_pct"] for s in streams])
    acc = sum(rows[s]["accepted"] for s in streams) / max(1, sum(rows[s]["windows"] for s in streams))
    base_acc = sum(base[s]["accepted"] for s in streams) / max(1, sum(base[s]["windows"] for s in streams))
    res, r, dense = gpu
    speed = (r["new"] / r["p50_s"]) / (dense["new"] / dense["p50_s"])
    ok = speed >= KF_RATE_TARGET and ate <= base_ate and acc >= base_acc
    return [(f"the node's default ({_layout_name(NODE_DEFAULT)}) >= {KF_RATE_TARGET}x the new keyframes/s of "
             f"{_layout_name(base_key)} at equal or better ATE",
             f"{speed:.2f}x on {device_short(res)} (`{res['file']}`, VGGT-1B random weights); ATE {ate:.2f} vs "
             f"{base_ate:.2f} %, windows accepted {100 * acc:.0f} vs {100 * base_acc:.0f} % over {len(streams)} held-out "
             f"streams ({name} in the default layout, {networks[0][0]} in the baseline's)", verdict(ok))]


def window_size_rows(res: Dict) -> Dict[Tuple[str, int], Dict]:
    return {(r["mode"], r["frames"]): r for r in res.get("rows", []) if r.get("seconds")}


def window_size_table(res: Dict) -> List[str]:
    rows = window_size_rows(res)
    first = next(iter(res.get("rows", [])), {})
    lines = [f"Setup: one forward of a window of K keyframes, {first.get('layout')} layout (overlap "
             f"{res.get('overlap')} known keyframes, K - {res.get('overlap')} new), config `{res.get('config')}` "
             f"({res.get('weights_dtype')} weights), {first.get('image_hw')} images, median of "
             f"{first.get('repeats')} (min in brackets); new keyframes per second of model time = new / median. "
             + source(res), "",
             *md_head("K (new)", "dense s (min)", "dense new kf/s", "HTTM s (min)", "HTTM new kf/s", "HTTM / dense",
                      "HTTM kept Q / KV")]
    for k in sorted({f for _, f in rows}):
        d, h = rows.get(("dense", k)), rows.get(("httm", k))
        cells = [f"{num(r['seconds'])} ({num(min(r.get('runs_s') or [r['seconds']]))}) | "
                 f"{num(r.get('new_keyframes_per_s'), '{:.2f}')}" if r else f"{NOT_YET} | {NOT_YET}" for r in (d, h)]
        speed = f"{h['new_keyframes_per_s'] / d['new_keyframes_per_s']:.2f}x" if d and h else NOT_YET
        merge = (h or {}).get("merge") or {}
        lines.append(f"| {k} ({k - (res.get('overlap') or 0)}) | {cells[0]} | {cells[1]} | {speed} | "
                     f"{num(merge.get('kept_q'), '{:.2f}')} / {num(merge.get('kept_kv'), '{:.2f}')} |")
    return lines + [""]


def window_size_targets(res: Dict) -> List[Tuple[str, str, str]]:
    """HTTM at the baseline's 24/8 and the best row against dense 24/8, in new keyframes/s."""
    rows = window_size_rows(res)
    base = rows.get(("dense", BASELINE_WINDOW[0]))
    where = f"{res.get('config')}, {device_short(res)}"
    name = f">= {KF_RATE_TARGET}x the new keyframes/s of dense {BASELINE_WINDOW[0]}/{BASELINE_WINDOW[1]}"
    if base is None or res.get("overlap") != BASELINE_WINDOW[1]:
        return [(f"{name} ({where})", NOT_YET, f"{NOT_YET} (no dense {BASELINE_WINDOW[0]}/{BASELINE_WINDOW[1]} row)")]
    rate = lambda r: r["new_keyframes_per_s"] / base["new_keyframes_per_s"]      # noqa: E731
    out = []
    default = rows.get(("httm", BASELINE_WINDOW[0]))
    if default:
        out.append((f"{name}: HTTM, K={BASELINE_WINDOW[0]} ({where})", f"{rate(default):.2f}x",
                    verdict(rate(default) >= KF_RATE_TARGET)))
    (mode, k), best = max(rows.items(), key=lambda kv: kv[1]["new_keyframes_per_s"])
    out.append((f"{name}: the best measured row ({mode}, K={k}) ({where})", f"{rate(best):.2f}x",
                verdict(rate(best) >= KF_RATE_TARGET)))
    return out


def device_short(res: Dict) -> str:
    return str(env_of(res).get("device") or "?").split(" (")[0]


# ------------------------------------------------------------------------------------- issue 17
def dtype_section(results: List[Dict]) -> List[str]:
    measured = {(name, device_short(res).startswith("CPU")) for res in results for name in res.get("dtypes") or {}}
    open_targets = [] if any(not cpu for _, cpu in measured) else [
        ("bfloat16 and float16 weights on the GPU: half the memory, errors within the tolerance", NOT_YET,
         f"{NOT_YET} (needs CUDA: `httm-bench dtype --device cuda --dtypes bfloat16 float16`)")]
    return result_section("Weights dtype: bfloat16 / float16 weights against float32 (issue 17)", results,
                          "no `httm-bench dtype` file (bench/results/dtype/)", dtype_table, dtype_targets,
                          "Targets (issue 17: half the memory at the same outputs within the stated tolerance, "
                          "docs/ROS.md: relative L2 error < 3e-2 pose encoding, < 1e-2 depth and confidence):",
                          open_targets)


def dtype_table(res: Dict) -> List[str]:
    ref = res.get("float32") or {}
    lines = [f"Setup: {res.get('model')}, images {res.get('images')}, reference {res.get('reference')}; weights cast "
             "the node's way, aggregator autocast off; relative L2 error |got - ref| / |ref|. " + source(res), "",
             "| weights | weight MiB | vs float32 | forward s | pose encoding | depth | depth confidence |",
             "|---|---|---|---|---|---|---|"]
    pub = ref.get("vs_public_code") or {}
    if ref:
        lines.append(md_row("float32 (vs the public code's golden arrays)", mib(ref.get("weight_bytes")), "1.00",
                            num(ref.get("forward_s"), "{:.2f}"), *(num(pub.get(k), "{:.1e}") for k in DTYPE_TOLERANCE)))
    for name, row in (res.get("dtypes") or {}).items():
        err = row.get("rel_error_vs_float32") or {}
        lines.append(md_row(name, mib(row.get("weight_bytes")), num(row.get("weight_ratio"), "{:.2f}"),
                            num(row.get("forward_s"), "{:.2f}"), *(num(err.get(k), "{:.1e}") for k in DTYPE_TOLERANCE)))
    if not res.get("dtypes"):
        lines += ["", f"{NOT_YET}: no reduced-precision row in this file"]
    return lines + [""]


def dtype_targets(res: Dict) -> List[Tuple[str, str, str]]:
    out, where = [], device_short(res)
    for name, row in (res.get("dtypes") or {}).items():
        ratio_ = row.get("weight_ratio")
        out.append((f"{name} weights: half the memory of float32 ({where})", num(ratio_, "{:.2f}x"),
                    verdict(None if ratio_ is None else ratio_ <= 0.5 + 1e-6)))
        err = row.get("rel_error_vs_float32") or {}
        for k, tol in DTYPE_TOLERANCE.items():
            out.append((f"{name} weights: {k} relative error < {tol:.0e} ({where})", num(err.get(k), "{:.1e}"),
                        verdict(None if err.get(k) is None else err[k] < tol)))
    return out


# ------------------------------------------------------------------------------------- issue 18
def loops_section(results: List[Dict]) -> List[str]:
    return result_section("Loop closure: GTSAM pose graph (issue 18)", results,
                          "no `httm-bench loops` file (bench/results/loops/)",
                          lambda res: loops_tables(res) + loops_timing_table(res) + loops_scale_table(res),
                          lambda res: loops_targets(res) + [(n, NOT_YET, f"{NOT_YET} (listed as not measured in "
                                                             f"{res['file']})") for n in res.get("not_measured", [])],
                          "Targets (issue 18):")


CLOSING_ERROR = ("Loop-closing error = the final drift: the last keyframe's position error, % of the path, after "
                 "the Sim(3) of the first 10 % of the keyframes (the camera comes back to where it began). ")


def loops_trained_section(results: Sequence[Dict]) -> List[str]:
    """Issue 18 with the trained network (``bench/loops_trained.py``): per held-out seed, ATE with and
    without the pose graph, and the target ATE with <= LOOP_ATE_RATIO x ATE without."""
    out = ["### Loop closure with the trained network (issue 18)", ""]
    if not results:
        return out + [NOT_YET + " (`python bench/loops_trained.py --seeds 0 1 2 3`)", ""]
    targets = []
    for res in results:
        cfg = res.get("config") or {}
        laps = (cfg.get("frames") or 0) / LAP_FRAMES
        out += [f"The shipped network on held-out walks of {cfg.get('frames')} frames ({laps:.1f} laps), anchored "
                f"{cfg.get('window')}/{cfg.get('overlap')} with the card's checks, synchronous graph updates. "
                + CLOSING_ERROR + source(res), "",
                *md_head("seed", "ATE off %", "ATE on %", "on / off", "loop-closing error off / on %",
                         "windows accepted off / on", "loops accepted", "loops rejected (reasons)")]
        by_seed: Dict[int, Dict[bool, Dict]] = {}
        for r in res.get("rows", []):
            by_seed.setdefault(r["seed"], {})[bool(r.get("loop_closure"))] = r
        for seed, pair in sorted(by_seed.items()):
            off, on = pair.get(False, {}), pair.get(True, {})
            q = ratio(on.get("ate_pct"), off.get("ate_pct"))
            out.append(md_row(seed, num(off.get("ate_pct")), num(on.get("ate_pct")), num(q, "{:.2f}"),
                              f"{num(off.get('final_drift_pct'))} / {num(on.get('final_drift_pct'))}",
                              f"{off.get('accepted')}/{off.get('windows')} / {on.get('accepted')}/{on.get('windows')}",
                              on.get("loops_accepted"), rejected(on.get("loops_rejected"))))
            if (cfg.get("frames") or 0) < LAP_FRAMES:            # less than one lap: no place is revisited
                targets.append((f"trained network, held-out seed {seed}, no loop in the sequence: no increase "
                                f"(within {NO_LOOP_SLACK:.1%}; {res['file']})", num(q, "{:.3f}"),
                                NOT_YET if q is None else verdict(q <= 1 + NO_LOOP_SLACK)))
                continue
            targets.append((f"trained network, held-out seed {seed}: ATE with loops <= {LOOP_ATE_RATIO:.0%} of "
                            f"ATE without ({res['file']})", num(q, "{:.2f}"),
                            NOT_YET if q is None else verdict(q <= LOOP_ATE_RATIO)))
        out.append("")
    return out + ["Targets (issue 18, trained network):", "", *target_rows(targets), ""]


def loops_tables(res: Dict) -> List[str]:
    cfg = res.get("config") or {}
    knobs = "; ".join(f"`{k}` = {v or 'LoopClosureConfig()'}" for k, v in (res.get("knobs") or {}).items())
    lines = [f"Setup: anchored stream with the drifting oracle (`drift_deg` per keyframe pair) on a two-lap sequence "
             f"of {cfg.get('frames')} frames and on a shorter one without a loop, seed {cfg.get('seed')}; "
             f"knobs: {knobs}. "
             "After each loop-closure stream a wrong loop is injected. " + CLOSING_ERROR + source(res), "",
             *md_head("sequence", "drift deg", "knobs", "ATE off %", "ATE on %", "on / off",
                      "loop-closing error off / on %", "loops accepted / rejected", "update ms mean / max",
                      "batch solves", "map rebuild ms",
                      "wrong loop")]
    for seq, rows in (("loop", res.get("stream", [])), ("no loop", res.get("no_loop", []))):
        off = {r.get("drift_deg"): r for r in rows if not r.get("loop_closure")}
        for r in (r for r in rows if r.get("loop_closure")):
            base = off.get(r.get("drift_deg"), {})
            lines.append(f"| {seq} | {r.get('drift_deg')} | {r.get('knobs')} | {num(base.get('ate_pct'))} | "
                         f"{num(r.get('ate_pct'))} | {num(ratio(r.get('ate_pct'), base.get('ate_pct')), '{:.2f}')} | "
                         f"{num(base.get('final_drift_pct'))} / {num(r.get('final_drift_pct'))} | "
                         f"{r.get('loops_accepted')} / {rejected(r.get('loops_rejected'))} | "
                         f"{num(ms(r.get('update_s_mean')), '{:.1f}')} / {num(ms(r.get('update_s_max')), '{:.1f}')} | "
                         f"{r.get('batch_solves')} | {num(ms(r.get('map_rebuild_s_mean')), '{:.0f}')} | "
                         f"{wrong_loop(r)} |")
    lines += ["", "| graph-only wrong loop: knobs | rejected | reasons |", "|---|---|---|"]
    lines += [md_row(g.get("knobs"), g.get("rejected"), rejected(g.get("reasons")))
              for g in res.get("graph_wrong_loop", [])]
    return lines + [""]


def loops_timing_table(res: Dict) -> List[str]:
    """Asynchronous vs synchronous graph updates (``timing`` rows): ATE per run of the same stream."""
    rows = res.get("timing") or []
    if not rows:
        return missing("the asynchronous-vs-synchronous runs (`--timing-repeats`)")
    groups: Dict[Tuple, List[Dict]] = {}
    for r in rows:
        key = (r.get("drift_deg"), "synchronous" if r.get("synchronous") else "asynchronous", r.get("paced_s") or 0.0)
        groups.setdefault(key, []).append(r)
    lines = ["Asynchronous graph updates (the node's setting) vs synchronous ones, the default knobs on the "
             "two-lap sequence: ATE of every run (the same stream repeated). `paced` = each window takes at "
             "least that long (the oracle waits out the rest), as a GPU model's window would; unpaced, the "
             "oracle's windows take milliseconds and a correction reaches the stream several windows late.", "",
             *md_head("drift deg", "graph updates", "paced s", "runs", "ATE % per run", "loops accepted per run",
                      "stream wall s (mean)")]
    for (drift, mode, paced), got in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "synchronous", kv[0][2])):
        lines.append(md_row(drift, mode, paced, len(got), ", ".join(num(r.get("ate_pct")) for r in got),
                            ", ".join(str(r.get("loops_accepted")) for r in got),
                            num(sum(r.get("wall_s", 0.0) for r in got) / len(got), "{:.1f}")))
    return lines + [""]


def loops_scale_table(res: Dict) -> List[str]:
    runs = [res[k] for k in ("scale", "scale_large_drift") if res.get(k)]
    if not runs:
        return missing("the 10k-keyframe graph run (`--scale-keyframes`)")
    lines = ["Pose graph alone (no images, oracle drift, 5 keyframes per update, a loop every "
             f"{runs[0].get('loop_every')} keyframes), on the solver thread: update time over the last 200 updates, "
             "process resident memory.", "",
             *md_head("knobs", "keyframes", "updates", "update ms mean / p95", "max ms", "RSS MiB (growth)",
                      "loops accepted / rejected", "batch solves (max ms)")]
    for run in runs:
        lines += [f"| {run.get('knobs')} | {r.get('keyframes')} | {r.get('updates')} | "
                  f"{num(ms(r.get('update_s_mean_last')), '{:.1f}')} / "
                  f"{num(ms(r.get('update_s_p95_last')), '{:.1f}')} | "
                  f"{num(ms(r.get('update_s_max')), '{:.0f}')} | {num(r.get('rss_mib'), '{:.0f}')} "
                  f"(+{num(r.get('rss_growth_mib'), '{:.0f}')}) | {r.get('loops_accepted')} / "
                  f"{sum((r.get('loops_rejected') or {}).values())} | {r.get('batch_solves')} "
                  f"({num(ms(r.get('batch_solve_s_max')), '{:.0f}')}) |" for r in run.get("rows", [])]
    return lines + [""]


def loops_targets(res: Dict) -> List[Tuple[str, str, str]]:
    out = []
    for seq, rows in (("loop", res.get("stream", [])), ("no loop", res.get("no_loop", []))):
        off = {r.get("drift_deg"): r.get("ate_pct") for r in rows if not r.get("loop_closure")}
        for r in (r for r in rows if r.get("loop_closure")):
            out += loop_row_targets(seq, r, off.get(r.get("drift_deg")))
    for g in res.get("graph_wrong_loop", []):
        out.append((f"graph-only wrong loop rejected ({g.get('knobs')})",
                    "rejected" if g.get("rejected") else "accepted", verdict(bool(g.get("rejected")))))
    for key in ("scale", "scale_large_drift"):
        last = ((res.get(key) or {}).get("rows") or [None])[-1]
        if last:
            out.append((f"optimisation per update at {last.get('keyframes')} keyframes ({res[key].get('knobs')}): "
                        "off the inference thread", f"{num(ms(last.get('update_s_mean_last')), '{:.1f}')} ms mean, "
                        f"{num(ms(last.get('update_s_max')), '{:.0f}')} ms max, "
                        f"RSS +{num(last.get('rss_growth_mib'), '{:.0f}')} MiB",
                        "measured (runs on the solver thread; no numeric target)"))
    return out


def loop_row_targets(seq: str, r: Dict, base: Optional[float]) -> List[Tuple[str, str, str]]:
    """A loop-closure stream against the same drift without it: ATE halved (loop) or not increased
    (no loop); the wrong loop injected after it rejected with the map unchanged."""
    on, at = r.get("ate_pct"), f"@{r.get('drift_deg')} deg ({r.get('knobs')}"
    known = on is not None and base is not None
    got = f"{num(on)} vs {num(base)} %"
    if seq == "loop":
        out = [(f"ATE with loops <= {LOOP_ATE_RATIO:.0%} of ATE without {at})", got,
                verdict(on <= LOOP_ATE_RATIO * base if known else None))]
    else:
        out = [(f"no increase without a loop {at}, within 0.1 %)", got,
                verdict(on <= base * (1 + NO_LOOP_SLACK) if known else None))]
    if "wrong_loop" in r:
        ok = all(r["wrong_loop"].get(k) for k in ("rejected", "map_unchanged", "trajectory_unchanged"))
        out.append((f"wrong loop injected into the stream: rejected, map unchanged {at})", wrong_loop(r), verdict(ok)))
    return out


def ms(seconds) -> Optional[float]:
    return None if seconds is None else 1000.0 * seconds


def rejected(reasons: Optional[Dict]) -> str:
    reasons = reasons or {}
    return str(sum(reasons.values())) + "".join(f" ({k}: {v})" for k, v in reasons.items())


def wrong_loop(row: Dict) -> str:
    w = row.get("wrong_loop")
    if not w:
        return "-"
    return ("rejected" if w.get("rejected") else "ACCEPTED") + (", map " + ("unchanged" if w.get("map_unchanged")
                                                                              else "changed"))


# ------------------------------------------------------------------------------------- issue 19
def distributed_section(fidelity: List[Dict], timing: List[Dict]) -> List[str]:
    lines = ["## Beyond one GPU: torch.distributed (issue 19)", ""]
    if not fidelity:
        lines += missing("no `httm-bench distributed --fidelity` file")
    t = []
    for res in fidelity:
        lines += distributed_fidelity_table(res)
        t += distributed_fidelity_targets(res)
    for res in timing:
        lines += distributed_timing_table(res)
    done = {(r.get("gpus"), r.get("frames")) for res in timing for r in res.get("rows", [])
            if r.get("mode") == "httm" and r.get("seconds") is not None}
    todo = [f"{f} frames on {g} GPU(s)" for g, f in DISTRIBUTED_GPU_ROWS if (g, f) not in done]
    t.append(("GPU: 1000 / 2000 / 4000 frames on 1 / 2 / 4 GPUs (HTTM): seconds, peak memory, all-gathers, efficiency",
              f"{len(DISTRIBUTED_GPU_ROWS) - len(todo)} of {len(DISTRIBUTED_GPU_ROWS)} rows",
              "measured" if not todo else f"{NOT_YET}: "
              + ("no GPU row" if len(todo) == len(DISTRIBUTED_GPU_ROWS) else ", ".join(todo))
              + " (needs a machine with 2-4 GPUs; docs/DISTRIBUTED.md \"GPU run\")"))
    return lines + ["Targets (issue 19):", ""] + target_rows(t)


def distributed_fidelity_table(res: Dict) -> List[str]:
    m = res.get("merge") or {}
    keys = ("pose_enc", "depth", "depth_conf")
    pct = lambda d: " / ".join(num(100 * (d or {}).get(k, math.nan), "{:.3g}%") for k in keys)    # noqa: E731
    lines = [f"Setup: {res.get('model')}, {res.get('image_hw')} images, regions n_s = {m.get('spatial_block')}, n_t = "
             f"{m.get('temporal_frames')}, Q merge {m.get('q_merge')} (outliers {m.get('q_outlier')}), KV merge "
             f"{m.get('kv_merge')}; relative L2 error of the sharded HTTM outputs against the one-process HTTM outputs "
             "as a share of the merging's own error (one-process HTTM against dense), per outlier budget. "
             + source(res), "",
             "| frames | processes | merging vs dense: pose / depth / conf | `global` budget: share of merging error | "
             "`rank` budget: share of merging error |", "|---|---|---|---|---|"]
    lines += [f"| {r.get('frames')} | {r.get('processes')} | "
              + " / ".join(num((r.get('merging_vs_dense') or {}).get(k), '{:.2g}') for k in keys)
              + f" | {pct(r.get('global_share_of_merging'))} | {pct(r.get('rank_share_of_merging'))} |"
              for r in res.get("rows", [])]
    return lines + [""]


def distributed_fidelity_targets(res: Dict) -> List[Tuple[str, str, str]]:
    """HTTM sharded within the merging's own tolerance (share < 1) with the default budget; which
    budget keeps the outputs closer to one process."""
    rows = res.get("rows", [])
    if not rows:
        return [("HTTM over N processes within the merging's own error", NOT_YET, NOT_YET)]
    worst = lambda r, b: max((r.get(f"{b}_share_of_merging") or {"?": math.inf}).values())    # noqa: E731
    top = max(worst(r, "global") for r in rows)
    closer = sum(worst(r, "global") < worst(r, "rank") for r in rows)
    return [("HTTM over 2-4 processes within the merging's own error (`global` budget, every output and row)",
             f"worst {100 * top:.3g}% of the merging error", verdict(top < 1.0)),
            ("outlier budget that keeps the outputs closer to one process (measure and document)",
             f"`global` closer in {closer} of {len(rows)} (frames, processes) rows", "measured")]


def distributed_timing_table(res: Dict) -> List[str]:
    lines = [f"Timing: {source(res)}", "",
             *md_head("GPUs", "frames", "mode", "seconds", "speed-up", "efficiency", "peak GiB (max rank)",
                      "all-gather MB per rank", "error")]
    lines += [f"| {r.get('gpus')} | {r.get('frames')} | {r.get('mode')} | {num(r.get('seconds'), '{:.2f}')} | "
              f"{num(r.get('speedup'), '{:.2f}x')} | {num(r.get('efficiency'), '{:.2f}')} | "
              f"{num(r.get('peak_memory_gib_max'), '{:.1f}')} | "
              f"{num(megabytes(r.get('all_gather_bytes_per_rank')), '{:.0f}')} | "
              f"{(r.get('error') or '-').splitlines()[0][:80]} |" for r in res.get("rows", [])]
    return lines + [""]


def megabytes(nbytes) -> Optional[float]:
    return None if nbytes is None else nbytes / 1e6


def extra_sections(extra: Dict[str, List[Dict]], windows: Sequence[Dict] = (), e2e: Sequence[Dict] = ()) -> List[str]:
    """Issue 14's levers (``windows``, ``e2e``: the windows and other e2e files, for the targets against
    the FastVGGT code's one-shot rows) and the issue-15..19 sections, every one present (a missing
    file says what is not measured)."""
    return [*compile_section(extra["compile"], windows, e2e), *stream_section(extra["stream"]),
            *training_section(extra["model_card"], extra["train_log"], extra["streaming"], extra["merging_trained"]),
            *streaming_section(extra["streaming"]),
            *window_size_section(extra["window_size"], extra["window_accuracy"], windows),
            *dtype_section(extra["dtype"]), *loops_section(extra["loops"]), *loops_trained_section(extra["loops_trained"]),
            *distributed_section(extra["distributed_fidelity"], extra["distributed"])]


def stream_section(results: Sequence[Dict]) -> List[str]:
    """Issue 14's ``httm-bench stream``: the node's streaming core without DDS, one table per file."""
    out = ["## The streaming core at the node's settings (`httm-bench stream`, issue 14)", "",
           "The node's model runner, start-up warm-up and StreamConfig built from its parameter values "
           "(`httm_ros.bench.node_stream`), a synthetic sequence pushed frame by frame; latency = from the "
           "push of a window's last frame to its result; p50/p99 over the windows after the first. Geometry "
           "`oracle`: the model runs on every window for its time, the core gets the synthetic ground "
           "truth's geometry (random weights would lose every window); `model`: the model's own outputs. "
           "Stage `context` (anchored windows: choosing the anchor and context keyframes, before the model) "
           "is timed from 605259e on; before it that work was outside every stage and grew with the keyframe "
           "store (one projection per stored keyframe): see the time outside every stage under "
           "`h100_s17_stream_long.json`. `cpu_context_before.json` / `cpu_context_after.json`: the same command "
           "before and after the "
           "store's covisibility became one projection (`keyframe_store.visible_fractions`).", ""]
    if not results:
        return out + [NOT_YET + " (`PART=12 bash bench/gpu_next.sh` on the GPU)", ""]
    if not any(str(env_of(res).get("device", "")).startswith("NVIDIA") for res in results):
        out += ["On the GPU: " + NOT_YET + " (`PART=12 bash bench/gpu_next.sh`).", ""]
    for res in results:
        env = env_of(res)
        out += [f"`{env.get('command')}` ({str(env.get('commit'))[:7]}, `{res['file']}`)", "",
                *node_stream.stream_table(res), ""]
    return out


def compile_section(results: List[Dict], windows: Sequence[Dict] = (), e2e: Sequence[Dict] = ()) -> List[str]:
    """Issue 14's levers, each measured alone: e2e files of one call, eager and
    ``--compile-tokenwise``, the DPT heads in float32 and ``--dpt-dtype bfloat16``, float32 and bf16
    weights; then the targets against the FastVGGT code's one-shot rows among ``windows`` (ours: these
    files and ``e2e``)."""
    rows = [(res, r) for res in results for r in res.get("rows", []) if r.get("seconds") is not None]
    out = ["## Issue 14's levers, each measured alone: compiled token-wise passes, bf16 DPT heads, bf16 weights, "
           "compiled DPT heads", "",
           "`httm-bench e2e --compile-tokenwise` runs every block's norms, qkv, q/k norm + RoPE, LayerScale, "
           "residuals and MLP through `torch.compile` (inductor; `httm_ros.vggt.layers.compile_tokenwise`), "
           "the attention cores eager; the same input repeated, one untimed forward at the row's size "
           "first (`first run`, which includes the compile for a new shape), the breakdown of the last "
           "repeat. Eager and compiled rows of one commit on one device ran in one device call. The "
           "node's regime with the lever is in the windows table above (rows marked `compiled`). "
           "`--dpt-dtype bfloat16` (the heads lever: the DPT heads under bf16 autocast, channels-last; "
           "`VGGTConfig.dpt_cuda_dtype`) is paired the same way with float32 heads, and `--weights-dtype "
           "bfloat16` (the weights cast to bf16) with float32 weights, and `--compile-heads` (the DPT heads' "
           "chunks through `torch.compile`; `httm_ros.vggt.heads.compile_dense_heads`) with eager heads. The "
           "`--compile-mode max-autotune-no-cudagraphs` lever (inductor's GEMM autotuning and epilogue "
           "fusion; its mode in the `compiled` column) ran alone at 24 frames; a row that did not finish (its "
           "compile at 100 and 1000 frames ran out of the call's time) has no line.", ""]
    peer = ["Against the FastVGGT code on the same frames (its code in its own process in the same device call, "
            "its warm forward; ours: the fastest row of the mode at that size of the same commit and device):", "",
            *target_rows(peer_oneshot_targets([*results, *e2e], windows))]
    if not rows:
        return out + [NOT_YET, ""] + peer + roofline_section(results)
    out += md_head("mode", "frames", "attention", "compiled", "DPT heads", "weights", "first run s", "warm s",
                   "dino", "global attention", "aggregator_other", "heads_and_host", "peak GiB", "device", "commit",
                   "file")
    for res, r in sorted(rows, key=lambda x: (x[1]["frames"], x[1]["mode"], compile_sdpa(*x), _compiled(x[0]),
                                              _dpt(x[0]), _weights(x[0]))):
        b, env = r.get("breakdown_s") or {}, env_of(res)
        warm = num(r["seconds"]) + (" (cold: no row warm-up)" if r.get("row_warmup") is False else "")
        compiled = _compiled_label(res)
        out.append(md_row(r["mode"], r["frames"], compile_sdpa(res, r), compiled, _dpt(res),
                          _weights(res), num(r.get("first_run_s")), warm, num(b.get("dino")),
                          num(b.get("global_attention")), num(b.get("aggregator_other")), num(b.get("heads_and_host")),
                          num(r.get("peak_gib"), "{:.2f}"), env.get("device", "?"), str(env.get("commit", "?"))[:7],
                          res["file"]))
    compiled = lever_table(rows, _compiled, lambda res: (_dpt(res), _weights(res), _heads(res)), ("eager", "compiled"),
                           "aggregator_other")
    dpt = lever_table(rows, lambda res: _dpt(res) != "float32", lambda res: (_compiled(res), _weights(res), _heads(res)),
                      ("DPT float32", "DPT bf16"), "heads_and_host")
    weights = lever_table(rows, lambda res: _weights(res) != "float32",
                          lambda res: (_compiled(res), _dpt(res), _heads(res)), ("weights float32", "weights bf16"),
                          "aggregator_other")
    heads = lever_table(rows, _heads, lambda res: (_compiled(res), _dpt(res), _weights(res)),
                        ("DPT eager", "DPT compiled"), "heads_and_host")
    levers = [part for table in (dpt, weights, heads) if table != [NOT_YET] for part in (*table, "")]
    return out + ["", *compiled, ""] + levers + peer + roofline_section(results)


def roofline_section(results: Sequence[Dict]) -> List[str]:
    """Issue 14's "where the time goes" against each part's bound: the fastest HTTM row per frame
    count among ``results`` (e2e files with a breakdown), next to ``roofline`` bounds at the
    H200's ceilings."""
    best: Dict[int, Tuple[Dict, Dict]] = {}
    for res in results:
        for r in res.get("rows", []):
            if r.get("mode") == "httm" and r.get("breakdown_s") and r.get("seconds") and \
                    (r["frames"] not in best or r["seconds"] < best[r["frames"]][1]["seconds"]):
                best[r["frames"]] = (res, r)
    c = roofline.CEILINGS_H200
    out = ["### Where the time goes against each part's bound (issue 14)", "",
           f"The fastest HTTM row per frame count above, its parts next to what they need at the H200's measured "
           f"ceilings (bf16 matmul {c['matmul_tflops']:.0f} TFLOP/s, SDPA {c['sdpa_tflops']:.0f} TFLOP/s, HBM "
           f"{c['hbm_tbps']} TB/s; `httm_ros.bench.roofline`: FLOP counted on the meta device, attention at the "
           "row's kept fractions, traffic op by op in bf16, unfused, so an upper estimate of the memory floor). "
           "bound = max(arithmetic, traffic). The rows ran on the device they name; an H100 has the same "
           "arithmetic and ~3.35 TB/s (vendor figure, not measured), so its traffic bounds are ~1.3x these. "
           "Parts over 2x of their bound: reasons in the analysis below (bench/NOTES.md).", ""]
    if not best:
        return out + [NOT_YET, ""]
    out += md_head("frames", "part", "measured s", "matmul TFLOP", "attention TFLOP", "traffic GB", "arithmetic s",
                   "traffic s", "measured / bound", "within 2x", "device", "file")
    for frames, (res, r) in sorted(best.items()):
        merge = r.get("merge") or {}
        costs = roofline.part_costs(frames, tuple(r.get("image_hw") or (392, 518)), merge.get("kept_q", 1.0),
                                    merge.get("kept_kv", 1.0))
        for part, b in roofline.bounds(costs).items():
            got = r["breakdown_s"].get(part)
            q = None if got is None else got / b["bound_s"]
            out.append(md_row(frames, part, num(got), num(costs[part]["matmul_flop"] / 1e12, "{:.1f}"),
                              num(costs[part]["attention_flop"] / 1e12, "{:.1f}"),
                              num(costs[part]["bytes"] / 1e9, "{:.1f}"),
                              num(b["arithmetic_s"]), num(b["traffic_s"]), num(q, "{:.2f}x"),
                              NOT_YET if q is None else ("yes" if q <= 2.0 else "NO"),
                              env_of(res).get("device", "?"), res["file"]))
    return out + [""]


def _compiled(res: Dict) -> bool:
    return bool(res.get("compile_tokenwise"))


def _heads(res: Dict) -> bool:
    return bool(res.get("compile_heads"))


def _compiled_label(res: Dict) -> str:
    """What of an e2e file ran through torch.compile, and in which mode when not the default."""
    if not _compiled(res):
        return "no"
    mode = f" ({res['compile_mode']})" if res.get("compile_mode") else ""
    return ("passes + DPT heads" if _heads(res) else "passes") + mode


def _dpt(res: Dict) -> str:
    return res.get("dpt_dtype") or "float32"


def _weights(res: Dict) -> str:
    return res.get("weights_dtype") or "float32"


def compile_sdpa(res: Dict, row: Dict) -> str:
    """Attention kernels of an e2e row: HTTM's ``attention_sdpa`` (its file's or HTTMConfig's default
    flash), "sdpa" for dense."""
    if row.get("mode") != "httm":
        return "sdpa"
    return row.get("attention_sdpa") or res.get("attention_sdpa") or "flash"


def lever_table(rows: List[Tuple[Dict, Dict]], lever: Callable[[Dict], bool], other: Callable[[Dict], object],
                names: Tuple[str, str], part: str) -> List[str]:
    """With the lever over without it, for each (mode, frames, attention, the other lever's setting)
    measured both ways on one commit and device; ``part``: the breakdown entry it acts on."""
    by_key: Dict[Tuple, Dict[bool, Dict]] = {}
    for res, r in rows:
        env = env_of(res)
        key = (r["mode"], r["frames"], compile_sdpa(res, r), str(other(res)), env.get("commit"), env.get("device"))
        by_key.setdefault(key, {})[lever(res)] = r
    out = md_head("mode", "frames", "attention", f"{names[0]} s", f"{names[1]} s", "speed-up",
                  f"{part} {names[0]} -> {names[1]} s")
    for (mode, frames, sdpa, *_), got in sorted(by_key.items(), key=lambda kv: kv[0][:4]):
        if len(got) == 2:
            e, c = got[False], got[True]
            parts = [(x.get("breakdown_s") or {}).get(part) for x in (e, c)]
            out.append(md_row(mode, frames, sdpa, num(e["seconds"]), num(c["seconds"]),
                              num(ratio(e["seconds"], c["seconds"]), "{:.2f}x"), " -> ".join(num(x) for x in parts)))
    return out if len(out) > 2 else [NOT_YET]


def extra_provenance(extra: Dict[str, List[Dict]]) -> List[Dict]:
    """Provenance rows of the issue-15..19 files (same columns as ``results.load``'s)."""
    return [{"file": res["file"], "kind": kind, **env_of(res)} for kind in KINDS for res in extra[kind]]


def build_report(files: Sequence[Path], png: Optional[Path] = None, notes: Optional[Path] = None,
                 command: Optional[str] = None) -> str:
    extra, files = load_extra(files)              # an issue-15..19 file (window sizes: e2e) stays out of the rest
    rows, layer, envs, tests = load(files)
    side = load_side(files)
    envs = envs + extra_provenance(extra)
    pipe, node = side["pipeline"], side["node"]
    plotted = plot(rows, png) if png is not None else None
    t = targets(rows, layer)
    sdpa = sdpa_rows(files)                        # the flash / cuDNN e2e rows, read once
    command = command or "python -m httm_ros.bench report " + " ".join(str(Path(f)) for f in files)
    lines = [
        "# Benchmarks: VGGT-1B dense vs uniform merging vs HTTM (issues 4 and 14); streaming, loops, "
        "window sizes, weights dtype, several processes (issues 15-19)",
        "",
        "Generated by `" + command + "` from the JSON files only; a cell without a measurement says *"
        + NOT_YET + "*. The GPU numbers come from NVIDIA H100 80GB machines (device and provenance "
        "columns) and NVIDIA H200 machines (the device issue 14 names). The sections of issues 15-19 name their device "
        "with each file "
        "(most ran on this project's 2-core CPU machine).",
        "",
        *windows_section(side["windows"]),
        "## Long sequences (issue 4; H100 history)",
        "",
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
        "How to run: `bash bench/gpu_suite.sh 1` and `2` (see the script); methods: docs/KERNELS.md. "
        "The `HTTM attention` column says which SDPA kernels ran HTTM's grouped attention: rows measured "
        "before `HTTMConfig.attention_sdpa` existed ran cuDNN first, the path `attention_sdpa=\"cudnn\"` "
        "keeps; the default is now `flash`, " + flash_rows(rows, sdpa) + ".",
        "",
        "### Latency and peak memory",
        "",
        latency_table(rows),
        "",
        "### Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in t],
        "",
        "Missed targets: the breakdown below says where the time goes; the bound table shows how "
        "close HTTM is to the arithmetic limit (everything but global attention unchanged, global "
        "attention at 6% of dense).",
        "",
        "### Where the time goes (seconds, last repeat, CUDA events)",
        "",
        "`global_attention` / `frame_attention` = the attention cores (`Attention.attend`: SDPA, or "
        "merge + SDPA + unmerge); `aggregator_other` = norms, qkv/proj, MLPs, RoPE; "
        "`heads_and_host` = camera + depth heads and host time outside the aggregator.",
        "",
        breakdown_table(rows),
        "",
        "### Cold and warm forwards",
        "",
        "`first run` = the untimed forward at the row's size (a cold start: cuDNN execution plans, "
        "Triton compilation and launch-config tuning for new shapes).",
        "",
        warm_table(rows),
        "",
        "### HTTM's attention kernels: flash (the default) vs cuDNN, one run",
        "",
        "Rows of e2e files that name `attention_sdpa` (`httm-bench e2e --attention-sdpa`), the same "
        "input repeated: `first run` is what a one-shot call pays, `warm` what a repeated shape pays.",
        "",
        *sdpa_table(sdpa),
        "",
        "### Peak memory by part (GiB)",
        "",
        "Peak allocated memory while each part ran (weights, frames and kept block outputs "
        "included); the row's peak is the largest.",
        "",
        memory_table(rows),
        "",
        "### Arithmetic bound for HTTM",
        "",
        limits(rows),
        "",
        "### One global layer at 1000 frames (the paper's Table 4)",
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
    lines += merging_section(extra["merging_trained"])
    for fid in side["fidelity"]:
        lines += ["## Fidelity proxy (issues 3 and 8): the second line of evidence", "",
                  f"{fid['setup'].get('model')}; {fid['setup'].get('images')}, {fid['setup'].get('tokens')} tokens; "
                  f"metric: {fid['setup'].get('metric')}; mean over the 24 global layers. "
                  f"`{fid.get('command')}` at {str(fid.get('git_commit'))[:7]} on {fid.get('device')} ({fid['file']}). "
                  "Random (golden) weights: this measures how far each merge moves attention, not "
                  "reconstruction accuracy; the headline accuracy evidence is the trained-attention section "
                  "above.", "", fidelity_table(fid), ""]
    lines += extra_sections(extra, side["windows"], e2e_results(files))
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


def sdpa_rows(files: Sequence[Path]) -> List[Tuple[int, str, Dict, str, Dict]]:
    """(frames, attention_sdpa, row, file name, environment) of every measured HTTM row of the e2e
    files run with --attention-sdpa, by frame count then kernels."""
    got = []
    for path in files:
        if not Path(path).is_file():
            continue
        data = json.loads(Path(path).read_text())
        if data.get("kind") != "e2e":
            continue
        for row in data.get("rows", []):
            if row.get("mode") == "httm" and row.get("attention_sdpa") and row.get("seconds") is not None:
                got.append((row["frames"], row["attention_sdpa"], row, Path(path).name, env_of(data)))
    return sorted(got, key=lambda g: (g[0], g[1]))


def sdpa_table(got: Sequence[Tuple[int, str, Dict, str, Dict]]) -> List[str]:
    """flash vs cudnn HTTM rows (``sdpa_rows``), by frame count."""
    if not got:
        return [NOT_YET]
    out = md_head("frames", "attention_sdpa", "first run s", "warm s", "global attention s (warm)",
                  "device", "commit", "file")
    for frames, sdpa, row, name, env in got:
        out.append(md_row(frames, sdpa, num(row.get("first_run_s")), num(row["seconds"]),
                          num((row.get("breakdown_s") or {}).get("global_attention")),
                          env.get("device", "?"), str(env.get("commit", "?"))[:7], name))
    return out


def flash_rows(rows, sdpa: Sequence[Tuple[int, str, Dict, str, Dict]] = ()) -> str:
    """Which frame counts have an HTTM row with the default (flash) attention: in the tables above,
    or else in the flash-vs-cuDNN table (``sdpa``: the ``sdpa_rows`` of the report's files)."""
    got = [f for (m, f), r in sorted(rows.items(), key=lambda kv: kv[0][1])
           if m == "httm" and r.get("seconds") is not None
           and (r.get("attention_grouping_last_layer") or {}).get("kernels") == "flash"]
    if got:
        return "measured at " + ", ".join(map(str, got)) + " frames"
    compared = sorted({frames for frames, kernels, *_ in sdpa if kernels == "flash"})
    if compared:
        return ("measured against cuDNN at " + ", ".join(map(str, compared)) + " frames in the table "
                "\"HTTM's attention kernels\" below")
    return "whose time at these sizes is " + NOT_YET


def add_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("files", type=Path, nargs="*")
    r.add_argument("--md", type=Path, default=Path("BENCHMARKS.md"))
    r.add_argument("--png", type=Path, default=None)
    r.add_argument("--notes", type=Path, default=None, help="markdown appended as is (the analysis)")


def run(args, argv: List[str]) -> int:
    """``httm-bench report``."""
    text = build_report(args.files, png=args.png, notes=args.notes,
                        command="python -m httm_ros.bench " + shlex.join(argv))
    args.md.write_text(text)
    print(f"wrote {args.md}" + (f" and {args.png}" if args.png else ""))
    return 0
