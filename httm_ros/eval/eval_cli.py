"""httm-eval: reconstruction accuracy of VGGT with and without token merging, on your data.

    httm-eval run DATASET --weights model.safetensors [--modes none,uniform,httm] [--stride 10]
                  [--layout auto|7scenes|nrgbd|tum|folder] [--streaming] --out DIR
    httm-eval synthetic [--oracle | --weights ...] [--frames 24] --out DIR
    httm-eval fidelity [--model 1b|tiny] --out DIR
    httm-eval merging [--weights model.safetensors] [--frames 24] [--clips 8] [--streaming-frames 40]
                      --out FILE.json

run: keyframes (every --stride-th frame) of a 7-Scenes / Neural RGB-D / TUM RGB-D sequence or a
generic folder go through the model once per merge mode (all keyframes in one forward pass, as
in the HTTM paper; --streaming adds the sliding-window pipeline). Each prediction is aligned to
the ground truth (Sim(3) from camera centres, then ICP) and scored: accuracy / completeness
(mean nearest-neighbour distances), camera ATE / RPE, model time and peak memory. Writes
DIR/results.json and DIR/results.md (a table like the paper's Table 1).
synthetic: the same on a rendered sequence with exact ground truth (the oracle predictor by
default: see that the metrics work without a checkpoint or data).
fidelity: the HTTM fidelity proxy (per-layer attention error vs dense; HTTM vs uniform merging).
merging: the accuracy cost of merging on trained attention: a trained checkpoint (default the shipped
httm-vggt-synth) on the held-out synthetic clips, dense vs uniform vs HTTM at the paper's ratios and
at the uniform baseline's kept-token budget (depth, cameras, clouds, per-layer attention error).
Also runs as ``python -m httm_ros.eval``. See docs/EVALUATION.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..httm import add_merge_arguments, merge_config_from_args
from ..httm.arguments import MERGE_MODES, parse_layers
from ..io.ply import PLYError, save_ply
from ..pipeline import ModelPredictor
from ..provenance import device_name, git_commit
from ..synthetic import Sequence as FrameSequence
from ..synthetic import demo_sequence
from ..synthetic.oracle import OraclePredictor
from ..vggt import CheckpointError
from ..vggt.factory import CONFIG_NAMES, WEIGHTS_HELP, build_model, resolve_device
from .datasets import LAYOUTS, DatasetError, open_dataset
from .evaluate import (EvalOptions, depth_cloud, evaluate, finish_cloud, model_inputs, row, run_offline,
                       run_streaming)
from .eval_report import fidelity_markdown, jsonable, markdown_table, write_results
from .reference import load_reference

LOG = logging.getLogger("httm_ros.eval")
ALIGNMENT_TEXT = ("Sim(3) from the cameras (Umeyama on the camera centres, or camera orientations + centres, "
                  "whichever starts closer to the ground truth), then point-to-point ICP")
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UsageError(ValueError):
    """A bad combination of options (reported as one line, exit code 2)."""


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="httm-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,synthetic,fidelity,merging}")
    run = sub.add_parser("run", help="evaluate on a dataset sequence", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("dataset", help="sequence folder (7-Scenes seq-XX, Neural RGB-D scene, TUM RGB-D, generic)")
    run.add_argument("--layout", choices=("auto",) + LAYOUTS, default="auto", help="(default: %(default)s)")
    run.add_argument("--stride", type=int, default=10, help="keyframe every N frames (paper: 10; default %(default)s)")
    run.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    run.add_argument("--max-frames", type=int, default=None, help="at most this many keyframes")
    run.add_argument("--gt", choices=("auto", "depth", "file"), default="auto",
                     help="ground-truth points: back-projected GT depth of the keyframes, or a mesh/cloud PLY "
                          "(auto: depth if the data has it, else the layout's PLY)")
    run.add_argument("--gt-file", type=Path, help="ground-truth mesh or cloud (PLY) in the poses' world frame")
    run.add_argument("--gt-samples", type=int, default=1_000_000,
                     help="points sampled on a GT mesh (default %(default)s)")
    run.add_argument("--max-depth", type=float, default=10.0,
                     help="GT depth beyond this (m) is invalid (default %(default)s)")
    run.add_argument("--depth-scale", type=float, default=None,
                     help="raw depth units per metre (default: the layout's)")
    run.add_argument("--intrinsics", type=_four_floats, default=None, metavar="FX,FY,CX,CY",
                     help="override the ground-truth intrinsics (native pixels)")
    _add_predictor_options(run)
    _add_eval_options(run, default_size=518)

    syn = sub.add_parser("synthetic", help="evaluate on a rendered sequence with exact ground truth")
    syn.add_argument("--frames", type=int, default=48, help="rendered frames (default %(default)s)")
    syn.add_argument("--width", type=int, default=518, help="(default %(default)s)")
    syn.add_argument("--height", type=int, default=392, help="(default %(default)s)")
    syn.add_argument("--scene-seed", type=int, default=0, help="scene and trajectory seed (default 0)")
    syn.add_argument("--trajectory", default="orbit", help="orbit, ... (httm_ros.synthetic; default orbit)")
    syn.add_argument("--speed", type=float, default=0.05, help="metres per frame (default %(default)s)")
    syn.add_argument("--stride", type=int, default=1, help="keyframe every N rendered frames (default 1)")
    syn.add_argument("--save", type=Path, help="also write the sequence here (generic folder layout)")
    _add_predictor_options(syn)
    _add_eval_options(syn, default_size=None)

    fid = sub.add_parser("fidelity", help="HTTM fidelity proxy (per-layer attention error vs dense)")
    fid.add_argument("--model", choices=("1b", "tiny"), default="1b",
                     help="1b: VGGT-1B aggregator with the golden weights (the benchmark, ~2.5 min and ~5 GB "
                          "on CPU); tiny: a small test network (smoke test only)")
    fid.add_argument("--frames", type=int, default=8)
    fid.add_argument("--width", type=int, default=168)
    fid.add_argument("--height", type=int, default=126)
    fid.add_argument("--no-ablations", action="store_true", help="only the main comparisons")
    fid.add_argument("--out", type=Path, default=Path("outputs/eval"), help="(default %(default)s)")

    mer = sub.add_parser("merging", help="accuracy cost of merging on trained attention (held-out synthetic clips)")
    mer.add_argument("--weights", help="a checkpoint that carries its config (default: the shipped "
                                       "httm-vggt-synth, httm_ros.weights.synth_weights())")
    mer.add_argument("--frames", type=int, nargs="+", default=[24],
                     help="frames per clip, one window each (default %(default)s)")
    mer.add_argument("--clips", type=int, default=8, help="held-out clips, scene seeds 0..N-1 (default %(default)s)")
    mer.add_argument("--width", type=int, default=None, help="(default: the model card's image_hw, else 168)")
    mer.add_argument("--height", type=int, default=None, help="(default: the model card's image_hw, else 126)")
    mer.add_argument("--streaming-frames", type=int, default=0,
                     help="also stream clips of this many frames through the pipeline (0 = off; default 0)")
    mer.add_argument("--streaming-clips", type=int, default=1, help="streamed clips (default %(default)s)")
    mer.add_argument("--window", type=int, default=24, help="streaming: keyframes per window (default %(default)s)")
    mer.add_argument("--overlap", type=int, default=8, help="streaming: overlap (default %(default)s)")
    mer.add_argument("--out", type=Path, default=Path("outputs/eval/merging_trained.json"),
                     help="result JSON (default %(default)s)")
    return p


def _four_floats(text: str) -> Tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"expected FX,FY,CX,CY, got {text!r}")
    return vals


def _add_predictor_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("predictor")
    g.add_argument("--oracle", action="store_true",
                   help="ground truth distorted like VGGT output instead of the model (needs GT depth)")
    g.add_argument("--oracle-noise", type=float, default=0.01, help="OraclePredictor noise (default %(default)s)")
    g.add_argument("--oracle-outliers", type=float, default=0.02, help="oracle outlier fraction (default %(default)s)")
    g.add_argument("--weights", help="VGGT checkpoint (.safetensors or .pt). " + WEIGHTS_HELP)
    g.add_argument("--allow-test-weights", action="store_true",
                   help="without --weights, run deterministic test weights (meaningless geometry; smoke tests)")
    g.add_argument("--config", choices=CONFIG_NAMES, default="1b", help="network size (default %(default)s)")
    g.add_argument("--dtype", choices=tuple(DTYPES), default="auto",
                   help="parameter dtype (auto: float32 parameters; CUDA autocasts the aggregator as the model does)")
    g.add_argument("--modes", default="none,uniform,httm",
                   help="comma-separated merge modes to compare: none, uniform, httm, each optionally with knobs "
                        "overriding the options below, e.g. httm:q_merge=0.85:q_outlier=0.05 (default %(default)s)")
    add_merge_arguments(p)
    for action in p._actions:              # --merge is replaced by --modes here
        if action.dest == "merge":
            action.help, action.default = argparse.SUPPRESS, None


def _add_eval_options(p: argparse.ArgumentParser, default_size: Optional[int]) -> None:
    d = EvalOptions()
    g = p.add_argument_group("evaluation")
    g.add_argument("--out", type=Path, default=Path("outputs/eval"), help="output folder (default %(default)s)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    g.add_argument("--size", type=int, default=default_size,
                   help="model input width, multiple of 14 (default: " + (f"{default_size})" if default_size else
                                                                         "the frame width)"))
    g.add_argument("--conf-percentile", type=float, default=d.conf_percentile,
                   help="drop predicted points below this confidence percentile (default %(default)s)")
    g.add_argument("--pixel-stride", type=int, default=d.pixel_stride, help="every n-th pixel (default %(default)s)")
    g.add_argument("--max-points", type=int, default=d.max_points, help="random cap per cloud (default %(default)s)")
    g.add_argument("--voxel", type=float, default=d.voxel, help="voxel-downsample both clouds, GT units (0 = off)")
    g.add_argument("--icp-iterations", type=int, default=d.icp_iterations, help="0 = no ICP (default %(default)s)")
    g.add_argument("--icp-threshold", type=float, default=d.icp_threshold,
                   help="ICP pair cut-off, fraction of the GT bounding-box diagonal (0 = none; default %(default)s)")
    g.add_argument("--icp-scale", action="store_true", help="ICP refines the scale too (default rigid)")
    g.add_argument("--warmup", type=int, default=None, help="untimed forward passes first (default: 1 on CUDA, else 0)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--streaming", action="store_true",
                   help="also run the sliding-window pipeline (StreamingReconstructor) per mode")
    g.add_argument("--window", type=int, default=24, help="streaming: keyframes per window K (default %(default)s)")
    g.add_argument("--overlap", type=int, default=8, help="streaming: overlap O (default %(default)s)")
    g.add_argument("--save-clouds", action="store_true", help="write aligned clouds (GT frame) to OUT/clouds/")


# ---------------------------------------------------------------------------- modes and predictors
def parse_modes(text: str, args: argparse.Namespace) -> List[Tuple[str, object]]:
    """"none,httm:q_merge=0.85" -> [(label, merge config or None)] (UsageError if bad)."""
    out = []
    for spec in [s.strip() for s in text.split(",") if s.strip()]:
        name, *knobs = spec.split(":")
        if name not in MERGE_MODES:
            raise UsageError(f"--modes: unknown mode {name!r} in {spec!r}; choose from {MERGE_MODES}")
        config = merge_config_from_args(argparse.Namespace(**{**vars(args), "merge": name}))
        if knobs:
            if config is None:
                raise UsageError(f"--modes: 'none' takes no knobs ({spec!r})")
            config = dataclasses.replace(config, **{k: v for k, v in (_knob(config, kv, spec) for kv in knobs)})
        out.append((spec, config))
    if not out:
        raise UsageError("--modes: no mode given")
    return out


def _knob(config, text: str, spec: str):
    key, _, value = text.partition("=")
    names = {f.name for f in dataclasses.fields(config)}
    if key not in names or not value:
        raise UsageError(f"--modes: bad knob {text!r} in {spec!r}; {type(config).__name__} has {sorted(names)}")
    current = getattr(config, key)
    try:
        if key == "layers":
            return key, parse_layers(value.replace("+", ","))
        if isinstance(current, bool):
            return key, value.lower() in ("1", "true", "yes", "on")
        return key, type(current)(value)
    except (ValueError, argparse.ArgumentTypeError) as err:
        raise UsageError(f"--modes: bad value in {text!r}: {err}") from None


def _nominal_ratios(config) -> Tuple[Optional[float], Optional[float]]:
    if config is None:
        return 1.0, 1.0
    if hasattr(config, "q_kept"):
        return config.q_kept, config.kv_kept
    return None, None


def make_runs(args, seq_model: FrameSequence, device: torch.device) -> Tuple[List[tuple], str]:
    """[(label, nominal (q, kv) ratios, predictor factory, device)] and a description of the predictor."""
    if args.oracle:
        if not seq_model.depth.any():
            raise UsageError("--oracle needs ground-truth depth, and this sequence has none")
        label = f"oracle (noise {args.oracle_noise:g})"
        make = lambda: OraclePredictor(seq_model, noise=args.oracle_noise, seed=args.seed,  # noqa: E731
                                       outlier_fraction=args.oracle_outliers)
        return [(label, (1.0, 1.0), make, torch.device("cpu"))], \
            f"OraclePredictor (ground truth + noise {args.oracle_noise:g}, outliers {args.oracle_outliers:g})"
    modes = parse_modes(args.modes, args)
    model = build_model(args.config, args.weights, args.allow_test_weights, str(device))
    dtype = DTYPES[args.dtype]
    runs = [(label, _nominal_ratios(cfg), _model_factory(model, device, dtype, cfg), device) for label, cfg in modes]
    desc = (f"VGGT ({args.config}) from {args.weights}" if args.weights else
            f"VGGT ({args.config}) with deterministic TEST WEIGHTS: geometry meaningless, timing only")
    return runs, desc


def _model_factory(model, device, dtype, config) -> Callable:
    return lambda: ModelPredictor(model, device=device, dtype=dtype, merge=config)


# ---------------------------------------------------------------------------- evaluation
def options_from_args(args, width: int) -> EvalOptions:
    return EvalOptions(size=args.size or (width // 14) * 14, conf_percentile=args.conf_percentile,
                       pixel_stride=args.pixel_stride, max_points=args.max_points, voxel=args.voxel,
                       icp_iterations=args.icp_iterations, icp_threshold=args.icp_threshold,
                       icp_scale=args.icp_scale, seed=args.seed, warmup=args.warmup or 0)


def evaluate_sequence(args, seq: FrameSequence, dataset: dict, gt_points: Optional[np.ndarray],
                      gt_desc: str, notes: List[str]) -> dict:
    """Every mode (and pipeline) on the keyframes ``seq``; returns the result dict (written by the caller)."""
    device = resolve_device(args.device)
    if args.warmup is None:
        args.warmup = 1 if device.type == "cuda" else 0
    opts = options_from_args(args, seq.width)
    images, seq_model = model_inputs(seq, opts.size)
    runs, predictor_desc = make_runs(args, seq_model, device)
    gt_tree = cKDTree(gt_points) if gt_points is not None else None
    rows = []
    for label, ratios, make, dev in runs:
        LOG.info("%s: offline, %d keyframes", label, len(seq))
        recon = run_offline(make(), images, opts, dev)
        rows.append(row(label, "offline", recon, evaluate(recon, gt_points, seq.cam_to_world, opts, gt_tree), ratios))
        if args.streaming:
            LOG.info("%s: streaming K=%d O=%d", label, args.window, args.overlap)
            recon = run_streaming(make(), images, args.window, args.overlap, opts, dev)
            metrics = evaluate(recon, gt_points, seq.cam_to_world, opts, gt_tree)
            rows.append(row(label, f"streaming K={args.window} O={args.overlap}", recon, metrics, ratios))
    _save_clouds(args, rows, gt_points)
    for r in rows:
        r.pop("aligned_points", None)
        notes += [f"{r['method']} {r['pipeline']}: window {w['window']} rejected ({w['reason']})"
                  for w in r["details"]["run"].get("rejected", [])]
    dataset.update(model_input_hw=list(images.shape[-2:]), native_hw=[seq.height, seq.width], keyframes=len(seq))
    if not args.oracle and not args.weights:
        notes.append("deterministic test weights: accuracy numbers are meaningless (timing and plumbing only)")
    time_text = ("synchronised wall time of the model forward pass(es); streaming: sum over windows"
                 + (f", after {args.warmup} warm-up pass(es)" if args.warmup else ""))
    return {
        "tool": "httm-eval", "command": " ".join(["httm-eval", *args.argv]), "git_commit": git_commit(),
        "torch": torch.__version__,
        "device": device_name(device), "python": platform.python_version(), "dataset": dataset,
        "predictor": predictor_desc, "ground_truth": gt_desc,
        "settings": {**asdict(opts), "alignment": ALIGNMENT_TEXT, "time": time_text,
                     "memory": "CUDA: max_memory_allocated above the allocation at start; CPU: peak RSS above "
                               "the start, sampled every 2 ms (see httm_ros.eval.resources)",
                     "streaming": {"window": args.window, "overlap": args.overlap} if args.streaming else None,
                     "modes": args.modes if not args.oracle else "oracle"},
        "rows": rows, "notes": notes,
    }


def _save_clouds(args, rows: List[dict], gt_points: Optional[np.ndarray]) -> None:
    if not args.save_clouds:
        return
    folder = args.out / "clouds"
    if gt_points is not None:
        save_ply(folder / "gt.ply", gt_points)
    for r in rows:
        if r.get("aligned_points") is not None:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{r['method']}_{r['pipeline']}")
            save_ply(folder / f"{name}.ply", r["aligned_points"])


def ground_truth(args, index, seq: FrameSequence, opts: EvalOptions) -> Tuple[Optional[np.ndarray], str]:
    """Ground-truth points per --gt, and a description."""
    has_depth = index.depth is not None and bool(seq.depth.any())
    path = args.gt_file or index.gt_file
    choice = args.gt if args.gt != "auto" else ("depth" if has_depth else "file" if path else "none")
    if choice == "depth":
        if not has_depth:
            raise UsageError(f"--gt depth: {index.root} has no ground-truth depth")
        return depth_cloud(seq, opts), (f"back-projected GT depth of the {len(seq)} keyframes (pixel stride "
                                        f"{opts.pixel_stride}, depth <= {args.max_depth} m)")
    if choice == "file":
        if path is None:
            raise UsageError("--gt file: no --gt-file given and the dataset has no ground-truth PLY")
        pts, desc = load_reference(path, args.gt_samples, opts.seed)
        return finish_cloud(pts, opts.voxel, opts.max_points, opts.seed), desc
    return None, "none (no depth, no PLY): camera metrics only"


def check_options(args) -> None:
    """Option errors that need no data (UsageError), checked before anything is loaded."""
    if args.streaming and not 1 <= args.overlap < args.window:
        raise UsageError(f"--overlap ({args.overlap}) must be < --window ({args.window}) and >= 1")
    if args.size is not None and (args.size < 14 or args.size % 14):
        raise UsageError(f"--size must be a positive multiple of 14, got {args.size}")
    if getattr(args, "stride", 1) < 1:
        raise UsageError("--stride must be >= 1")
    if not args.oracle:
        parse_modes(args.modes, args)
        if not (args.weights or args.allow_test_weights):
            raise CheckpointError(f"no checkpoint given (--weights). {WEIGHTS_HELP} Or pass --oracle (ground truth "
                                  "as the prediction) or --allow-test-weights (smoke test, meaningless geometry).")


def cmd_run(args) -> dict:
    check_options(args)
    index = open_dataset(args.dataset, args.layout)
    if args.intrinsics:
        index.with_intrinsics(*args.intrinsics)
    ids = index.select(args.stride, args.start, args.max_frames)
    seq = index.load(ids, max_depth=args.max_depth, depth_scale=args.depth_scale)
    opts = options_from_args(args, seq.width)
    gt_points, gt_desc = ground_truth(args, index, seq, opts)
    dataset = {"name": index.name, "layout": index.layout, "source": str(index.root), "frames_total": len(index),
               "stride": args.stride, "start": args.start, "frame_indices": ids.tolist()}
    return evaluate_sequence(args, seq, dataset, gt_points, gt_desc, list(index.notes))


def cmd_synthetic(args) -> dict:
    if args.frames < 1 or args.stride < 1:
        raise UsageError("--frames and --stride must be >= 1")
    if not (args.weights or args.allow_test_weights):
        args.oracle = True
    check_options(args)
    seq = demo_sequence(num_frames=args.frames, width=args.width, height=args.height, seed=args.scene_seed,
                        trajectory=args.trajectory, speed=args.speed)
    if args.save:
        seq.save(args.save)
    ids = np.arange(0, len(seq), args.stride)
    keys = FrameSequence(seq.images[ids], seq.depth[ids], seq.intrinsics[ids], seq.cam_to_world[ids],
                         seq.timestamps[ids], seq.scene, dict(seq.info))
    opts = options_from_args(args, keys.width)
    dataset = {"name": f"synthetic demo (seed {args.scene_seed}, {args.trajectory}, {args.speed} m/frame)",
               "layout": "synthetic", "source": "httm_ros.synthetic.demo_sequence", "frames_total": len(seq),
               "stride": args.stride, "start": 0, "frame_indices": ids.tolist()}
    gt = depth_cloud(keys, opts)
    return evaluate_sequence(args, keys, dataset, gt, f"exact rendered depth of the {len(keys)} keyframes "
                             f"(pixel stride {opts.pixel_stride})", [])


def cmd_fidelity(args) -> dict:
    from ..bench.fidelity import ABLATIONS, COMPARISONS, fidelity_proxy, format_table

    if args.frames < 1 or args.width < 14 or args.width % 14 or args.height < 14 or args.height % 14:
        raise UsageError("fidelity: --frames must be >= 1 and --width / --height positive multiples of 14")
    aggregator = None
    if args.model == "tiny":
        aggregator = build_model("tiny", allow_test_weights=True, device="cpu").aggregator
    comparisons = COMPARISONS if args.no_ablations else COMPARISONS + ABLATIONS
    result = fidelity_proxy(args.frames, args.width, args.height, comparisons, aggregator=aggregator)
    if args.model == "tiny":
        result["setup"]["model"] = "tiny test VGGT aggregator, deterministic test weights (smoke test only)"
    result.update(command=" ".join(["httm-eval", *args.argv]), git_commit=git_commit(),
                  device=device_name(torch.device("cpu")), torch=torch.__version__)
    print(format_table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fidelity.json").write_text(json.dumps(jsonable(result), indent=2) + "\n")
    (args.out / "fidelity.md").write_text(fidelity_markdown(result))
    print(f"wrote {args.out / 'fidelity.json'} and {args.out / 'fidelity.md'}")
    return result


def cmd_merging(args) -> dict:
    from ..bench.markdown_tables import merging_offline_table
    from ..provenance import environment, file_sha256, write_json
    from ..vggt.checkpoint import checkpoint_image_hw, read_model_card
    from ..weights import synth_weights
    from .merging import run_merging_eval

    if min(args.frames) < 2 or args.clips < 1 or args.streaming_frames < 0 or args.streaming_clips < 1:
        raise UsageError("merging: --frames must be >= 2, --clips and --streaming-clips >= 1, --streaming-frames >= 0")
    if args.streaming_frames and not 1 <= args.overlap < args.window <= args.streaming_frames:
        raise UsageError("merging: need 1 <= --overlap < --window <= --streaming-frames")
    weights = args.weights or synth_weights()
    if weights is None:
        raise CheckpointError("merging: no --weights and no shipped httm-vggt-synth weights in httm_ros/weights/")
    model = build_model("synth", str(weights), device="cpu")
    hw = checkpoint_image_hw(weights) or (126, 168)
    height, width = args.height or hw[0], args.width or hw[1]
    if height % 14 or width % 14:
        raise UsageError(f"merging: --width / --height must be multiples of 14, got {width}x{height}")
    result = run_merging_eval(model, args.frames, args.clips, (height, width), args.streaming_frames,
                              args.streaming_clips, args.window, args.overlap, log=LOG.info)
    statement = (read_model_card(weights) or {}).get("statement")
    result.update(weights=Path(weights).name, weights_sha256=file_sha256(weights),
                  model=f"trained VGGT {Path(weights).stem}" + (f": {statement}" if statement else ""),
                  environment=environment(torch.device("cpu"), args.argv, program="httm-eval"))
    write_json(args.out, jsonable(result))
    print("\n".join(merging_offline_table(result)))
    print(f"wrote {args.out}")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if getattr(args, "merge", None) is not None:
        parser.error("use --modes (e.g. --modes none,httm) instead of --merge")
    try:
        if args.command == "fidelity":
            cmd_fidelity(args)
            return 0
        if args.command == "merging":
            cmd_merging(args)
            return 0
        result = cmd_run(args) if args.command == "run" else cmd_synthetic(args)
    except (CheckpointError, DatasetError, PLYError, UsageError) as err:
        print(f"httm-eval: error: {err}", file=sys.stderr)
        return 2
    paths = write_results(result, args.out)
    print(markdown_table(result["rows"]))
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
