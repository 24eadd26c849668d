"""Issue 14's per-part bounds: what each part of a VGGT forward costs in arithmetic and in memory
traffic, and the time that cost needs at the H200's measured ceilings.

Parts as ``httm-bench e2e`` times them (``breakdown_s``): ``dino`` (the DINOv2 patch embedding),
``frame_attention`` and ``global_attention`` (the attention cores), ``aggregator_other`` (everything
else in the 48 blocks: norms, qkv/proj, q/k norm, RoPE, LayerScale, residuals, MLPs) and
``heads_and_host`` (camera and depth heads).

Counting: the modules run on the meta device (shapes only, no memory, no time) under torch's
``FlopCounterMode`` (matmuls and convolutions) and a dispatch mode that adds up the elements every
op reads and writes (views excluded), at 2 bytes each (bf16). Attention cores are counted
analytically: 4 * Nq * Nk * head_dim * heads FLOP, q, k, v read and o written once (what a
flash/cuDNN kernel moves), with Nq, Nk the kept fractions of HTTM or uniform merging. The traffic
is that of an unfused run, op by op: a fused or compiled pass moves less, so the traffic bound is
an upper estimate of the memory floor; the arithmetic bound is a floor.

    bound = max(matmul FLOP / matmul ceiling + attention FLOP / SDPA ceiling, bytes / HBM bandwidth)
"""

from __future__ import annotations

import contextlib
import functools
from typing import Dict, Tuple
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ..vggt.config import VGGTConfig
from ..vggt.model import VGGT

#: Issue 14 / shared/benchmarks/ANCHORS.md, measured on the H200: bf16 matmul on random data,
#: cuDNN SDPA (389-414 TFLOP/s on the H100, the same arithmetic), device-to-device copy.
CEILINGS_H200 = {"matmul_tflops": 790.0, "sdpa_tflops": 400.0, "hbm_tbps": 4.3}
PARTS = ("dino", "frame_attention", "global_attention", "aggregator_other", "heads_and_host")
BYTES_PER_ELEMENT = 2                      # bf16 activations (the aggregator's autocast, bf16 DPT heads)
_VIEWS = {"view", "_unsafe_view", "reshape", "permute", "expand", "transpose", "t", "slice", "select", "unsqueeze",
          "squeeze", "as_strided", "detach", "alias", "split", "split_with_sizes", "chunk", "unbind", "lift_fresh",
          "empty", "empty_like", "new_empty", "zeros", "zeros_like"}


class _Traffic(TorchDispatchMode):
    """Elements read and written by every non-view op."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] not in _VIEWS:
            tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(a, torch.Tensor)]
            self.elements += sum(t.numel() for t in tensors)
        return out


@contextlib.contextmanager
def _attention_counted_apart(tally: Dict[str, float]):
    """F.scaled_dot_product_attention as an analytic cost (flash-style traffic) added to ``tally``."""
    def core(q, k, v, attn_mask=None, **_):
        b, h, nq, d = q.shape
        tally["attention_flop"] += 4.0 * b * h * nq * k.shape[-2] * d
        tally["attention_elements"] += q.numel() + k.numel() + v.numel() + q.numel()
        return torch.empty_like(q)
    with mock.patch.object(F, "scaled_dot_product_attention", core):
        yield


def _count(fn, *args) -> Dict[str, float]:
    """Run ``fn(*args)`` on meta tensors -> matmul/conv FLOP, attention FLOP, elements moved."""
    from torch.utils.flop_counter import FlopCounterMode      # imports triton: only when counting

    tally = {"attention_flop": 0.0, "attention_elements": 0.0}
    traffic = _Traffic()
    with _attention_counted_apart(tally), FlopCounterMode(display=False) as flops, traffic, torch.no_grad():
        fn(*args)
    return {"matmul_flop": float(flops.get_total_flops()), "attention_flop": tally["attention_flop"],
            "elements": float(traffic.elements + tally["attention_elements"])}


def _meta_model(cfg: VGGTConfig) -> VGGT:
    with torch.device("meta"):
        return VGGT(cfg).requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _per_frame(cfg: VGGTConfig, image_hw: Tuple[int, int]) -> Dict[str, Dict[str, float]]:
    """Costs of one frame: DINO, one block's token-wise work (attention core left out), the depth head."""
    model = _meta_model(cfg)
    h, w = image_hw
    p = model.aggregator.patch_start + (h // cfg.patch_size) * (w // cfg.patch_size)
    block = model.aggregator.frame_blocks[0]
    block.attn.core = lambda q, k, v, layout: q                          # the core is counted apart
    model.aggregator.rope.position_bound = max(h, w) // cfg.patch_size + 1   # as the aggregator sets it
    x = torch.empty(1, p, cfg.embed_dim, device="meta")
    pos = torch.zeros(1, p, 2, dtype=torch.long, device="meta")
    layers = {i: torch.empty(1, 1, p, 2 * cfg.embed_dim, device="meta") for i in cfg.dpt_layers}
    return {"dino": _count(model.aggregator.patch_embed, torch.empty(1, 3, h, w, device="meta")),
            "block_tokenwise": _count(lambda: block(x, pos, None)),
            "depth_head": _count(lambda: model.depth_head(layers, model.aggregator.patch_start, image_hw, None, None)),
            "tokens": {"per_frame": float(p)}}


def part_costs(frames: int, image_hw: Tuple[int, int] = (392, 518), kept_q: float = 1.0, kept_kv: float = 1.0,
               cfg: VGGTConfig = None) -> Dict[str, Dict[str, float]]:
    """{part: {matmul_flop, attention_flop, bytes}} of one forward over ``frames`` frames
    (camera + depth heads); ``kept_q`` / ``kept_kv``: the global attention's kept fractions."""
    cfg = cfg or VGGTConfig.vggt_1b()
    one = _per_frame(cfg, tuple(image_hw))
    p = one["tokens"]["per_frame"]
    d = cfg.embed_dim

    def attention(nq: float, nk: float, calls: float) -> Dict[str, float]:
        return {"matmul_flop": 0.0, "attention_flop": 4.0 * nq * nk * d * calls,
                "elements": (2 * nq + 2 * nk) * d * calls}

    camera = _count(_meta_model(cfg).camera_head, torch.empty(1, frames, 2 * d, device="meta"))
    costs = {"dino": {k: v * frames for k, v in one["dino"].items()},
             "frame_attention": attention(p, p, cfg.depth * frames),
             "global_attention": attention(kept_q * p * frames, kept_kv * p * frames, cfg.depth),
             "aggregator_other": {k: v * 2 * cfg.depth * frames for k, v in one["block_tokenwise"].items()},
             "heads_and_host": {k: one["depth_head"][k] * frames + camera[k] for k in camera}}
    return {part: {"matmul_flop": c["matmul_flop"], "attention_flop": c["attention_flop"],
                   "bytes": c["elements"] * BYTES_PER_ELEMENT} for part, c in costs.items()}


def bounds(costs: Dict[str, Dict[str, float]],
           ceilings: Dict[str, float] = CEILINGS_H200) -> Dict[str, Dict[str, float]]:
    """{part: {arithmetic_s, traffic_s, bound_s}} at ``ceilings``."""
    out = {}
    for part, c in costs.items():
        arithmetic = c["matmul_flop"] / (ceilings["matmul_tflops"] * 1e12) + \
            c["attention_flop"] / (ceilings["sdpa_tflops"] * 1e12)
        traffic = c["bytes"] / (ceilings["hbm_tbps"] * 1e12)
        out[part] = {"arithmetic_s": arithmetic, "traffic_s": traffic, "bound_s": max(arithmetic, traffic)}
    return out
