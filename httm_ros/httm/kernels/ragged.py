"""Attention over merged sequences whose query length differs between heads.

HTTM picks outliers over all heads, so head h attends ``M + O_h`` query rows. One SDPA call over
all heads must pad every head to ``M + max O_h``: when outliers concentrate in a few heads, the
padding is paid in attention FLOPs (4 * rows * Mk * d per head). The other extreme, one call per
head, has no padding but each call leaves a partial last wave of tiles on the GPU.

``head_groups`` chooses between them with a small dynamic programme: heads sorted by length are
cut into consecutive groups; a group of g heads costs ``g * (longest length)`` query rows plus
``call_overhead_rows`` (about half a wave of 128-row tiles on 132 SMs: 8448). With balanced heads
the answer is one padded call (no copies); with skewed heads a few groups.

Which SDPA kernels run the calls (``kernels``): the group sizes and row counts follow the
per-head outlier counts, so every window of new content brings shapes not seen before. cuDNN
builds an execution plan for each new shape (seconds: measured windows of 24 frames on an H200
with spikes up to 4x the median); the flash kernels (and memory-efficient ones, which take an
attention bias) are compiled ahead of time for every shape, at ~75-80% of cuDNN's FLOP rate on
an H100 (flash 309-322 TFLOP/s, cuDNN 389-414). "flash" is the default; "cudnn" keeps
``vggt.layers.sdpa`` (cuDNN first).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from httm_ros.vggt.layers import sdpa

CALL_OVERHEAD_ROWS = 8448

#: SDPA backends that have no per-shape build step, in the order tried.
SHAPE_FREE = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def shape_free_sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
    """SDPA on CUDA restricted to ``SHAPE_FREE`` backends (flash; memory-efficient when there is a
    bias); elsewhere plain SDPA. q [B, h, Nq, d], k/v [B, h, Nk, d] -> [B, h, Nq, d]."""
    if q.device.type != "cuda":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    with sdpa_kernel(SHAPE_FREE):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


SDPA_KERNELS = {"flash": shape_free_sdpa, "cudnn": sdpa}


def round_rows(rows: int) -> int:
    """Query rows rounded up to a multiple of 1/64..1/32 of their power of two (>= 16): cuDNN
    builds an execution plan per distinct shape, and the outlier counts change from layer to
    layer; this keeps the distinct shapes few at <= 3% padding."""
    step = 1 << max(4, int(rows).bit_length() - 6)
    return -(-int(rows) // step) * step


def head_groups(lengths: Sequence[int], overhead: int = CALL_OVERHEAD_ROWS) -> List[List[int]]:
    """lengths of the (batch x head) rows -> groups of row indices (longest group first) that
    minimise sum(group size * longest in group) + overhead * groups."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n                                    # best[j]: first j sorted rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):                                                # group = sorted[i:j]
            cost = best[i] + (j - i) * lengths[order[i]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def ragged_attention(q: Tensor, k: Tensor, v: Tensor, lengths: Sequence[int],
                     attn_mask: Optional[Tensor] = None, overhead: int = CALL_OVERHEAD_ROWS,
                     rounding: Optional[Callable[[int], int]] = None,
                     kernels: str = "flash") -> Tuple[Tensor, dict]:
    """q [B, H, Mq, d] (rows past ``lengths[b*H + h]`` are padding), k, v [B, H, Mk, d],
    attn_mask None or [B, H, 1, Mk] -> (o [B, H, Mq, d] (padding rows undefined),
    info {groups, rows_attended, rows_single_call, rows_needed}). ``rounding`` maps a group's
    longest length to the rows its call attends (capped at Mq). ``kernels``: "flash" or "cudnn"
    (``SDPA_KERNELS``)."""
    attend = SDPA_KERNELS[kernels]
    b, h, mq, d = q.shape
    lengths = [int(x) for x in lengths]
    groups = head_groups(lengths, overhead)

    def rows_of(group):
        top = max(lengths[i] for i in group)
        return min(mq, rounding(top)) if rounding is not None else top

    info = {"kernels": kernels, "groups": len(groups),
            "rows_attended": sum(len(g) * rows_of(g) for g in groups),
            "rows_single_call": b * h * rows_of(range(len(lengths))), "rows_needed": sum(lengths)}
    if len(groups) == 1:
        top = rows_of(groups[0])
        o = attend(q[:, :, :top], k, v, attn_mask=attn_mask)
        if top == mq:
            return o, info
        out = q.new_zeros(b, h, mq, d)
        out[:, :, :top] = o
        return out, info
    qf, kf, vf = (t.reshape(b * h, 1, t.shape[2], d) for t in (q, k, v))
    mf = None if attn_mask is None else attn_mask.expand(b, h, 1, k.shape[2]).reshape(b * h, 1, 1, -1)
    out = q.new_zeros(b * h, mq, d)
    for group in groups:
        top = rows_of(group)
        idx = torch.tensor(group, device=q.device)
        if len(group) == 1:
            i = group[0]
            qg, kg, vg = qf[i:i + 1, :, :top], kf[i:i + 1], vf[i:i + 1]
            mg = None if mf is None else mf[i:i + 1]
        else:                                                             # heads side by side
            qg = qf.index_select(0, idx)[:, :, :top].transpose(0, 1)     # [1, g, top, d]
            kg, vg = kf.index_select(0, idx).transpose(0, 1), vf.index_select(0, idx).transpose(0, 1)
            mg = None if mf is None else mf.index_select(0, idx).transpose(0, 1)
        og = attend(qg, kg, vg, attn_mask=mg)                             # [1, g, top, d]
        out[idx, :top] = og[0]
    return out.view(b, h, mq, d), info
