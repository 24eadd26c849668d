"""The accuracy cost of token merging on trained attention: dense vs uniform vs HTTM (issue 15).

The trained small VGGT (``httm_ros.weights.synth_weights()``, or any checkpoint that carries its
config) runs the held-out synthetic clips (``httm_ros.train.data.heldout_specs``: scene seeds
0..n-1, never trained on) once per merge setting, each clip as one window (all frames in one
forward pass, the paper's setting):

    dense            no merging
    uniform          FastVGGT's merging (``UniformMergeConfig()``: its released defaults)
    httm             HTTM at the paper's ratios (``HTTMConfig()``: Q 20 %, K/V 30 %, regions 128 x 30)
    httm_matched     HTTM at the uniform baseline's kept-token budget: its Q and K/V merge ratios set
                     so that the *measured* kept fractions of Q and of K/V equal the uniform
                     baseline's measured kept fraction at that frame count (``matched_httm``)

Per clip and setting: depth AbsRel and delta<1.25 (per-window median scaling, as the model card's
held-out numbers), median relative rotation error over all frame pairs, ATE (% of the path after a
Sim(3) alignment), point-cloud accuracy / completeness against the exact rendered depth
(``httm_ros.eval.evaluate``: confident points, Sim(3) from the cameras + ICP), and per global
layer the relative error of the attention module's output against dense attention on the same
dense input (the fidelity machinery of ``httm_ros.bench.fidelity`` with the trained weights).
``--streaming-frames`` adds the settings through the sliding-window pipeline
(``StreamingReconstructor``) on the first clips.

    httm-eval merging --frames 24 --clips 8 --streaming-frames 40 --streaming-clips 1 \
        --out bench/results/merging_trained/cpu_synth.json
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..httm import HTTMConfig, UniformMergeConfig, patch
from ..httm.patch import global_attentions
from ..pipeline import ModelPredictor
from ..synthetic import Sequence as FrameSequence
from .evaluate import EvalOptions, depth_cloud, evaluate, run_offline, run_streaming

KIND = "merging_trained"
CLIP_METRICS = ("abs_rel", "delta_1_25", "rot_err_median_deg", "ate_percent", "acc", "comp", "chamfer",
                "kept_q", "kept_kv", "model_s")


def paper_settings() -> List[Tuple[str, object]]:
    """(name, merge config) of the settings at the paper's ratios (``httm_matched`` is added per frame count)."""
    return [("dense", None), ("uniform", UniformMergeConfig()), ("httm", HTTMConfig())]


def _kept(model, images: torch.Tensor, config) -> Dict[str, float]:
    """Measured kept fractions (Q, K/V; mean over layers and heads) of ``config`` on ``images`` [S,3,H,W]."""
    stats = patch(model, config)
    try:
        with torch.inference_mode():
            model.aggregator(images[None], keep_layers=[-1])
        return stats.summary()
    finally:
        patch(model, None)


def matched_httm(model, images: torch.Tensor, uniform: UniformMergeConfig, base: HTTMConfig = HTTMConfig(),
                 steps: int = 4, tol: float = 0.005) -> Tuple[HTTMConfig, Dict[str, float]]:
    """HTTM with the uniform baseline's kept-token budget on frames like ``images``.

    The uniform baseline keeps one fraction u of the tokens for Q, K and V (measured). HTTM's
    nominal kept fractions (Q: 1 - q_merge + q_outlier, K/V: 1 - kv_merge) start at u and are
    corrected by the measured excess (first-frame anchors, special tokens, outlier rounding)
    until both measured fractions are within ``tol`` of u. q_outlier stays ``base``'s (the
    paper's 0.1). Returns (config, {"uniform_kept", "httm_kept_q", "httm_kept_kv", "steps"}).
    """
    u = _kept(model, images, uniform)["kept_q"]
    q_nom, kv_nom = u, u
    for step in range(1, steps + 1):
        q_merge = min(max(1.0 - q_nom + base.q_outlier, base.q_outlier), 0.99)
        config = dataclasses.replace(base, q_merge=round(q_merge, 4), kv_merge=round(min(max(1.0 - kv_nom, 0.0), 0.99), 4))
        got = _kept(model, images, config)
        if abs(got["kept_q"] - u) <= tol and abs(got["kept_kv"] - u) <= tol:
            break
        q_nom += u - got["kept_q"]
        kv_nom += u - got["kept_kv"]
    return config, {"uniform_kept": u, "httm_kept_q": got["kept_q"], "httm_kept_kv": got["kept_kv"], "steps": step}


# ---------------------------------------------------------------------------- one clip
def clip_sequence(clip: dict) -> FrameSequence:
    """A rendered held-out clip (``render_clip``) as a synthetic ``Sequence`` (numpy, CPU)."""
    n = int(clip["images"].shape[0])
    return FrameSequence(clip["images"].cpu().numpy(), clip["depth"].float().cpu().numpy(),
                         clip["intrinsics"].float().cpu().numpy(), clip["cam_to_world"].double().cpu().numpy(),
                         np.arange(n, dtype=np.float64), clip["scene"], {})


class _Recorder:
    """A predictor that keeps its last prediction (the depth maps for AbsRel)."""

    def __init__(self, predictor) -> None:
        self.predictor, self.last = predictor, None

    def predict(self, images, frame_ids):
        self.last = self.predictor.predict(images, frame_ids)
        return self.last


def clip_metrics(model, images: torch.Tensor, seq: FrameSequence, config, opts: EvalOptions,
                 gt_points: np.ndarray, gt_tree: cKDTree) -> Dict:
    """One forward of a clip with ``config`` -> the held-out metrics, cloud metrics and kept fractions
    (plus ``rot_errors_deg``, all pairs, for the pooled median)."""
    from ..train.heldout import depth_metrics, relative_rotation_errors

    rec = _Recorder(ModelPredictor(model, merge=config))
    recon = run_offline(rec, images, opts)
    m = evaluate(recon, gt_points, seq.cam_to_world, opts, gt_tree)
    out = depth_metrics(rec.last.depth.cpu().numpy(), seq.depth)
    rot = relative_rotation_errors(recon.cam_to_world, seq.cam_to_world)
    ate = (m.get("cameras") or {}).get("ate") or {}
    merge = recon.merge
    out.update(rot_err_median_deg=float(np.median(rot)), rot_errors_deg=rot,
               ate_percent=100.0 * ate["rmse_rel"] if ate.get("length", 0.0) > 0.2 else math.nan,
               acc=m.get("acc_mean"), comp=m.get("comp_mean"), chamfer=m.get("chamfer"),
               kept_q=merge.get("kept_q", 1.0), kept_kv=merge.get("kept_kv", 1.0), model_s=recon.time_s)
    return out


def attention_errors(model, images: torch.Tensor, pairs: Dict[str, Tuple[HTTMConfig, UniformMergeConfig]]) -> Dict:
    """Per comparison {name: fidelity.compare(...)}: per global layer, relative error of HTTM's and the
    uniform baseline's attention output vs dense, on the dense q, k, v of ``images`` [S,3,H,W]."""
    from ..bench.fidelity import capture_global_qkv, compare

    patch(model, None)
    captured = capture_global_qkv(model.aggregator, images[None])
    attns = global_attentions(model.aggregator)
    return {name: compare(attns, captured, h, u) for name, (h, u) in pairs.items()}


def summarise(rows: List[Dict]) -> Dict:
    """Pool per-clip rows like the model card's held-out summary: means over clips, the rotation
    median over all frame pairs of all clips, ATE over the clips whose path is long enough."""
    rot = np.concatenate([r["rot_errors_deg"] for r in rows])
    mean = lambda k: float(np.mean([r[k] for r in rows if r.get(k) is not None and not math.isnan(r[k])]))  # noqa: E731
    out = {k: mean(k) for k in CLIP_METRICS if k != "rot_err_median_deg"}
    out["rot_err_median_deg"] = float(np.median(rot))
    out["clips"] = len(rows)
    return out


# ---------------------------------------------------------------------------- the whole run
def run_merging_eval(model, frames: Sequence[int] = (24,), clips: int = 8,
                     image_hw: Tuple[int, int] = (126, 168), streaming_frames: int = 0, streaming_clips: int = 1,
                     window: int = 24, overlap: int = 8, opts: Optional[EvalOptions] = None, log=print) -> Dict:
    """Every setting on ``clips`` held-out clips of each frame count (and streaming when
    ``streaming_frames``) -> the result dict (``kind`` "merging_trained"; no provenance)."""
    from ..train.data import heldout_specs, render_clip

    opts = opts or EvalOptions(size=image_hw[1])
    specs = heldout_specs(clips)
    result = {"kind": KIND, "image_hw": list(image_hw), "clips": clips, "frames": list(frames),
              "split": f"held-out scene seeds 0..{clips - 1} (httm_ros.train.data.heldout_specs; training seeds >= 1000)",
              "eval_options": dataclasses.asdict(opts), "offline": [], "attention": [], "streaming": []}
    t0 = time.perf_counter()
    for n in frames:
        rendered = [render_clip(spec, n, image_hw, "cpu") for spec in specs]
        seqs = [clip_sequence(c) for c in rendered]
        images = [torch.from_numpy(s.images).permute(0, 3, 1, 2).float().div_(255.0) for s in seqs]
        settings = paper_settings()
        matched, calib = matched_httm(model, images[0], dict(settings)["uniform"])
        settings.append(("httm_matched", matched))
        per_setting: Dict[str, List[Dict]] = {name: [] for name, _ in settings}
        layers: Dict[str, List[Dict]] = {}
        for i, (seq, x) in enumerate(zip(seqs, images)):
            gt = depth_cloud(seq, opts)
            tree = cKDTree(gt)
            for name, config in settings:
                row = clip_metrics(model, x, seq, config, opts, gt, tree)
                per_setting[name].append(dict(row, scene_seed=i))
            comps = attention_errors(model, x, {"paper_ratios": (HTTMConfig(), UniformMergeConfig()),
                                                "matched_budget": (matched, UniformMergeConfig())})
            for name, comp in comps.items():
                layers.setdefault(name, []).append(comp)
            log(f"{n} frames, clip {i}: " + ", ".join(
                f"{name} abs_rel {rows[-1]['abs_rel']:.4f} ate {rows[-1]['ate_percent']:.2f}%"
                for name, rows in per_setting.items()) + f" ({time.perf_counter() - t0:.0f} s)")
        for name, config in settings:
            rows = per_setting[name]
            result["offline"].append({"frames": n, "setting": name, "merge": _config(config),
                                      "summary": summarise(rows),
                                      "clips": [{k: r[k] for k in ("scene_seed", *CLIP_METRICS)} for r in rows]})
        for name, comps in layers.items():
            result["attention"].append(_attention_summary(n, name, comps, calib if name == "matched_budget" else None))
    if streaming_frames:
        result["streaming"] = streaming_rows(model, specs[:streaming_clips], streaming_frames, image_hw, window,
                                             overlap, opts, log)
        result["streaming_setup"] = {"frames": streaming_frames, "clips": streaming_clips, "window": window,
                                     "overlap": overlap}
    result["seconds"] = time.perf_counter() - t0
    return result


def _attention_summary(frames: int, name: str, comps: List[Dict], calib: Optional[Dict]) -> Dict:
    """Mean over clips of each layer's errors and kept fractions of one comparison."""
    keys = [k for k in comps[0]["layers"][0] if k != "layer"]
    layers = [{"layer": i, **{k: float(np.mean([c["layers"][i][k] for c in comps])) for k in keys}}
              for i in range(len(comps[0]["layers"]))]
    mean = {k: float(np.mean([r[k] for r in layers])) for k in keys}
    return {"frames": frames, "comparison": name, "httm": comps[0]["httm"], "uniform": comps[0]["uniform"],
            "layers": layers, "mean": mean, "calibration": calib}


def streaming_rows(model, specs, frames: int, image_hw: Tuple[int, int], window: int, overlap: int,
                   opts: EvalOptions, log=print) -> List[Dict]:
    """Each setting (HTTM matched on ``window``-frame windows) through ``run_streaming`` per clip."""
    from ..train.data import render_clip

    out = []
    for i, spec in enumerate(specs):
        seq = clip_sequence(render_clip(spec, frames, image_hw, "cpu"))
        x = torch.from_numpy(seq.images).permute(0, 3, 1, 2).float().div_(255.0)
        settings = paper_settings()
        matched, calib = matched_httm(model, x[:window], dict(settings)["uniform"])
        settings.append(("httm_matched", matched))
        gt = depth_cloud(seq, opts)
        tree = cKDTree(gt)
        for name, config in settings:
            recon = run_streaming(ModelPredictor(model, merge=config), x, window, overlap, opts)
            m = evaluate(recon, gt, seq.cam_to_world, opts, tree)
            ate = (m.get("cameras") or {}).get("ate") or {}
            out.append({"scene_seed": i, "frames": frames, "setting": name, "merge": _config(config),
                        "calibration": calib if name == "httm_matched" else None,
                        "windows": recon.extra.get("windows"),
                        "rejected": len(recon.extra.get("rejected", [])),
                        "keyframes": len(recon.frame_ids),
                        "ate_percent": 100.0 * ate["rmse_rel"] if ate else None,
                        "acc": m.get("acc_mean"), "comp": m.get("comp_mean"), "chamfer": m.get("chamfer"),
                        "kept_q": recon.merge.get("kept_q", 1.0), "kept_kv": recon.merge.get("kept_kv", 1.0),
                        "model_s": recon.time_s})
            log(f"streaming clip {i}, {name}: ATE {out[-1]['ate_percent']}, acc {out[-1]['acc']}")
    return out


def _config(config) -> Optional[Dict]:
    if config is None:
        return None
    return {"type": type(config).__name__,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}}
