"""Triton kernels of HTTM's hot path, and the functions that launch them.

Imported lazily (``httm_ros.httm.kernels.ops``): it imports triton at module level. On a CPU the
kernels run only in Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is first
imported); the tests do that.

Shapes: B batch, H heads, BH = B*H, N tokens (layout order), d head dim (DH), nblk merging
regions, D_MAX / S_MAX destination / source slots per region (ragged regions are padded),
M merged rows per head (special tokens first). Tokens are read through strides, so q, k, v may
be views (v is a strided view of the qkv projection in VGGT's attention).

Kernels (one program per tile; all loads and stores masked):
  _match_kernel      per (source tile, region, head): normalise sources and destinations on the
                     fly, cosine similarity by tl.dot, running max/argmax over destination
                     tiles: best destination of every source (never more than one
                     [BLOCK_S, BLOCK_D] tile of the similarity matrix exists); optionally
                     writes the merged row of every source token straight into ``assign``
  _aggregate_kernel  per (group tile, region, head): sums of the constituents of BLOCK_G merged
                     tokens as one-hot [BLOCK_G, BLOCK_S] x rows [BLOCK_S, d] products (tensor
                     cores, fp32 accumulation, deterministic, no atomics); one or two tensors
                     (K and V share the matching); writes sums (Q) or means (K/V) and counts
  _deviation_kernel  per (token tile, head): L2 distance of each token to its merged mean
  _outlier_kernel    per (token tile, head): outliers leave their merged token (fp32 atomic
                     subtraction from the sums), get their own row, and their new assignment
  _means_kernel      sums / counts -> merged rows in the attention dtype
  _unmerge_kernel    per (token tile, head, batch): gather of the merged outputs by ``assign``
                     (unmerge and inverse reorder in one pass), written in [B, N, H, d] so that
                     the attention module's transpose + reshape before ``proj`` is free
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from .interpreter_compat import patch_interpreter

if triton.knobs.runtime.interpret:
    patch_interpreter()

# ---------------------------------------------------------------------------------- kernels


@triton.jit(do_not_specialize=["H", "L", "nblk", "S_MAX", "D_MAX", "N", "GCW"])
def _match_kernel(x_ptr, sxb, sxh, sxn, H,
                  tok_ptr, L, n_dst_ptr, n_src_ptr, nblk, S_MAX, D_MAX,
                  score_ptr, group_ptr,
                  assign_ptr, N, gc_ptr, GCW,
                  DH: tl.constexpr, BLOCK_DH: tl.constexpr, BLOCK_S: tl.constexpr,
                  BLOCK_D: tl.constexpr, WRITE_ASSIGN: tl.constexpr, IEEE: tl.constexpr):
    pid_s = tl.program_id(0)
    blk = tl.program_id(1)
    bh = tl.program_id(2)
    b = bh // H
    h = bh % H
    base = x_ptr + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh
    n_src = tl.load(n_src_ptr + blk)
    n_dst = tl.load(n_dst_ptr + blk)
    cols = tl.arange(0, BLOCK_DH)
    c_ok = cols < DH
    row_base = tok_ptr + blk.to(tl.int64) * L

    s_offs = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    s_ok = s_offs < n_src
    s_tok = tl.load(row_base + D_MAX + s_offs, mask=s_ok, other=0).to(tl.int64)
    src = tl.load(base + s_tok[:, None] * sxn + cols[None, :],
                  mask=s_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    src = src / tl.maximum(tl.sqrt(tl.sum(src * src, axis=1)), 1e-12)[:, None]
    src = src.to(x_ptr.dtype.element_ty)

    best = tl.full([BLOCK_S], float("-inf"), tl.float32)
    arg = tl.zeros([BLOCK_S], dtype=tl.int32)
    for d0 in range(0, D_MAX, BLOCK_D):                         # ragged: masked by n_dst
        d_offs = d0 + tl.arange(0, BLOCK_D)
        d_ok = d_offs < n_dst
        d_tok = tl.load(row_base + d_offs, mask=d_ok, other=0).to(tl.int64)
        dst = tl.load(base + d_tok[:, None] * sxn + cols[None, :],
                      mask=d_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
        dst = dst / tl.maximum(tl.sqrt(tl.sum(dst * dst, axis=1)), 1e-12)[:, None]
        dst = dst.to(x_ptr.dtype.element_ty)
        if IEEE:
            sim = tl.dot(src, tl.trans(dst), input_precision="ieee")   # [BLOCK_S, BLOCK_D]
        else:
            sim = tl.dot(src, tl.trans(dst))
        sim = tl.where(d_ok[None, :], sim, float("-inf"))
        top, idx = tl.max(sim, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = top > best
        best = tl.where(better, top, best)
        arg = tl.where(better, idx.to(tl.int32) + d0, arg)

    out = (bh.to(tl.int64) * nblk + blk) * S_MAX + s_offs
    in_row = s_offs < S_MAX
    tl.store(score_ptr + out, tl.where(s_ok, best, float("-inf")), mask=in_row)
    tl.store(group_ptr + out, tl.where(s_ok, arg, -1), mask=in_row)
    if WRITE_ASSIGN:
        row = tl.load(gc_ptr + blk.to(tl.int64) * GCW + arg, mask=s_ok, other=0)
        tl.store(assign_ptr + bh.to(tl.int64) * N + s_tok, row.to(tl.int32), mask=s_ok)


@triton.jit(do_not_specialize=["H", "L", "nblk", "S_MAX", "D_MAX", "GCW", "M"])
def _aggregate_kernel(x_ptr, sxb, sxh, sxn, y_ptr, syb, syh, syn, H,
                      tok_ptr, L, n_dst_ptr, n_src_ptr, n_unm_ptr, nblk, S_MAX, D_MAX,
                      group_ptr, gc_ptr, GCW,
                      out_x_ptr, out_y_ptr, cnt_ptr, M,
                      DH: tl.constexpr, BLOCK_DH: tl.constexpr, BLOCK_G: tl.constexpr,
                      BLOCK_S: tl.constexpr, HAS_Y: tl.constexpr, MEAN: tl.constexpr,
                      IEEE: tl.constexpr):
    pid_g = tl.program_id(0)
    blk = tl.program_id(1)
    bh = tl.program_id(2)
    b = bh // H
    h = bh % H
    xbase = x_ptr + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh
    ybase = y_ptr + b.to(tl.int64) * syb + h.to(tl.int64) * syh
    n_dst = tl.load(n_dst_ptr + blk)
    n_src = tl.load(n_src_ptr + blk)
    n_unm = tl.load(n_unm_ptr + blk)
    cols = tl.arange(0, BLOCK_DH)
    c_ok = cols < DH
    row_base = tok_ptr + blk.to(tl.int64) * L

    g = pid_g * BLOCK_G + tl.arange(0, BLOCK_G)                  # group ids of this tile
    is_dst = g < n_dst
    g_ok = is_dst | ((g >= D_MAX) & (g < D_MAX + n_unm))
    d_tok = tl.load(row_base + g, mask=is_dst, other=0).to(tl.int64)
    acc_x = tl.load(xbase + d_tok[:, None] * sxn + cols[None, :],
                    mask=is_dst[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    if HAS_Y:
        acc_y = tl.load(ybase + d_tok[:, None] * syn + cols[None, :],
                        mask=is_dst[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    cnt = is_dst.to(tl.float32)

    grp_base = group_ptr + (bh.to(tl.int64) * nblk + blk) * S_MAX
    for s0 in range(0, S_MAX, BLOCK_S):                         # ragged: masked by n_src
        s = s0 + tl.arange(0, BLOCK_S)
        s_ok = s < n_src
        grp = tl.load(grp_base + s, mask=s_ok, other=-1)
        s_tok = tl.load(row_base + D_MAX + s, mask=s_ok, other=0).to(tl.int64)
        hit = (g[:, None] == grp[None, :]).to(tl.float32)         # [BLOCK_G, BLOCK_S] one-hot
        cnt += tl.sum(hit, axis=1)
        rows = tl.load(xbase + s_tok[:, None] * sxn + cols[None, :],
                       mask=s_ok[:, None] & c_ok[None, :], other=0.0)
        onehot = hit.to(rows.dtype)
        if IEEE:
            acc_x += tl.dot(onehot, rows, input_precision="ieee")
        else:
            acc_x += tl.dot(onehot, rows)
        if HAS_Y:
            rows_y = tl.load(ybase + s_tok[:, None] * syn + cols[None, :],
                             mask=s_ok[:, None] & c_ok[None, :], other=0.0)
            if IEEE:
                acc_y += tl.dot(hit.to(rows_y.dtype), rows_y, input_precision="ieee")
            else:
                acc_y += tl.dot(hit.to(rows_y.dtype), rows_y)

    row = tl.load(gc_ptr + blk.to(tl.int64) * GCW + g, mask=g_ok, other=0).to(tl.int64)
    out_row = bh.to(tl.int64) * M + row
    m2 = g_ok[:, None] & c_ok[None, :]
    tl.store(cnt_ptr + out_row, cnt, mask=g_ok)
    if MEAN:
        inv = 1.0 / tl.maximum(cnt, 1.0)
        tl.store(out_x_ptr + out_row[:, None] * DH + cols[None, :],
                 (acc_x * inv[:, None]).to(out_x_ptr.dtype.element_ty), mask=m2)
        if HAS_Y:
            tl.store(out_y_ptr + out_row[:, None] * DH + cols[None, :],
                     (acc_y * inv[:, None]).to(out_y_ptr.dtype.element_ty), mask=m2)
    else:
        tl.store(out_x_ptr + out_row[:, None] * DH + cols[None, :], acc_x, mask=m2)


@triton.jit(do_not_specialize=["H", "N", "M", "n_special"])
def _deviation_kernel(x_ptr, sxb, sxh, sxn, H, assign_ptr, N, sums_ptr, cnt_ptr, M, n_special,
                      dev_ptr, DH: tl.constexpr, BLOCK_DH: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = n < N
    cols = tl.arange(0, BLOCK_DH)
    m2 = ok[:, None] & (cols < DH)[None, :]
    row = tl.load(assign_ptr + bh.to(tl.int64) * N + n, mask=ok, other=0).to(tl.int64)
    x = tl.load(x_ptr + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh + n.to(tl.int64)[:, None] * sxn
                + cols[None, :], mask=m2, other=0.0).to(tl.float32)
    out_row = bh.to(tl.int64) * M + row
    c = tl.load(cnt_ptr + out_row, mask=ok, other=1.0)
    mean = tl.load(sums_ptr + out_row[:, None] * DH + cols[None, :], mask=m2, other=0.0)
    mean = mean / tl.maximum(c, 1.0)[:, None]
    diff = x - mean
    dev = tl.sqrt(tl.sum(diff * diff, axis=1))
    dev = tl.where(c > 1.5, dev, 0.0)
    dev = tl.where(row < n_special, -1.0, dev)
    tl.store(dev_ptr + bh.to(tl.int64) * N + n, dev, mask=ok)


@triton.jit(do_not_specialize=["H", "N", "M", "MQ"])
def _outlier_kernel(x_ptr, sxb, sxh, sxn, H, assign_ptr, pos_ptr, N, sums_ptr, cnt_ptr, M,
                    out_ptr, MQ, new_assign_ptr,
                    DH: tl.constexpr, BLOCK_DH: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = n < N
    cols = tl.arange(0, BLOCK_DH)
    c_ok = cols < DH
    tok = bh.to(tl.int64) * N + n
    row = tl.load(assign_ptr + tok, mask=ok, other=0)
    pos = tl.load(pos_ptr + tok, mask=ok, other=-1)
    out = ok & (pos >= 0)
    m2 = out[:, None] & c_ok[None, :]
    x = tl.load(x_ptr + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh + n.to(tl.int64)[:, None] * sxn
                + cols[None, :], mask=m2, other=0.0).to(tl.float32)
    old = bh.to(tl.int64) * M + row.to(tl.int64)
    tl.atomic_add(sums_ptr + old[:, None] * DH + cols[None, :], -x, mask=m2)
    tl.atomic_add(cnt_ptr + old, tl.full([BLOCK_N], -1.0, tl.float32), mask=out)
    new_row = M + pos
    dst = bh.to(tl.int64) * MQ + new_row.to(tl.int64)
    tl.store(out_ptr + dst[:, None] * DH + cols[None, :], x.to(out_ptr.dtype.element_ty), mask=m2)
    tl.store(new_assign_ptr + tok, tl.where(out, new_row, row).to(tl.int32), mask=ok)


@triton.jit(do_not_specialize=["M", "MQ"])
def _means_kernel(sums_ptr, cnt_ptr, M, out_ptr, MQ,
                  DH: tl.constexpr, BLOCK_DH: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    r = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    ok = r < M
    cols = tl.arange(0, BLOCK_DH)
    m2 = ok[:, None] & (cols < DH)[None, :]
    src = bh.to(tl.int64) * M + r
    c = tl.load(cnt_ptr + src, mask=ok, other=1.0)
    s = tl.load(sums_ptr + src[:, None] * DH + cols[None, :], mask=m2, other=0.0)
    mean = s / tl.maximum(c, 1.0)[:, None]
    dst = bh.to(tl.int64) * MQ + r
    tl.store(out_ptr + dst[:, None] * DH + cols[None, :], mean.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit(do_not_specialize=["H", "N"])
def _unmerge_kernel(o_ptr, sob, soh, som, H, assign_ptr, N, out_ptr,
                    DH: tl.constexpr, BLOCK_DH: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    h = tl.program_id(1)
    b = tl.program_id(2)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = n < N
    cols = tl.arange(0, BLOCK_DH)
    m2 = ok[:, None] & (cols < DH)[None, :]
    bh = b.to(tl.int64) * H + h
    row = tl.load(assign_ptr + bh * N + n, mask=ok, other=0).to(tl.int64)
    val = tl.load(o_ptr + b.to(tl.int64) * sob + h.to(tl.int64) * soh + row[:, None] * som + cols[None, :],
                  mask=m2, other=0.0)
    dst = (b.to(tl.int64) * N + n.to(tl.int64)) * H + h                    # out [B, N, H, d]
    tl.store(out_ptr + dst[:, None] * DH + cols[None, :], val.to(out_ptr.dtype.element_ty), mask=m2)


# --------------------------------------------------------------------------------- launchers

def _empty(*shape, dtype, device) -> Tensor:
    """Allocation of every kernel output (tests replace it to poison outputs)."""
    return torch.empty(*shape, dtype=dtype, device=device)


def _pow2(n: int, least: int = 16) -> int:
    return max(least, triton.next_power_of_2(int(n)))


def _ieee(x: Tensor) -> bool:
    """fp32 inputs: exact fp32 dot products (tl.dot would use tf32 otherwise)."""
    return x.dtype == torch.float32


def _stages(num_stages: Optional[int]) -> dict:
    """``num_stages`` launch option only when given (Triton's default otherwise; the interpreter
    ignores it)."""
    return {} if num_stages is None else {"num_stages": int(num_stages)}


def _strides(x: Tensor) -> Tuple[int, int, int]:
    """x [B, H, N, d] with a unit last stride -> (stride_b, stride_h, stride_n)."""
    if x.stride(-1) != 1:
        raise ValueError("kernels need a unit stride on the head dim")
    return x.stride(0), x.stride(1), x.stride(2)


def match(x: Tensor, kt, assign: Optional[Tensor] = None,
          block_s: int = 128, block_d: int = 64, num_warps: int = 8,
          num_stages: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Best destination of every source slot of every region.

    x [B, H, N, d]; kt: KernelTables -> (score [B*H, nblk, S_MAX] fp32, -inf at padding;
    best [B*H, nblk, S_MAX] int32, destination slot, -1 at padding). With ``assign``
    ([B*H, N] int32, destinations and special tokens already filled) the merged row of every
    source (all sources merged) is written into it as well. Launch configuration (tile sizes,
    warps, pipeline stages; Triton's default stages when None): see ``tune.CANDIDATES``.
    """
    x = x if x.stride(-1) == 1 else x.contiguous()
    b, h, n, d = x.shape
    nblk, s_max = kt.num_regions, kt.num_src
    score = _empty(b * h, nblk, s_max, dtype=torch.float32, device=x.device)
    best = _empty(b * h, nblk, s_max, dtype=torch.int32, device=x.device)
    if s_max == 0:
        return score, best
    write = assign is not None
    grid = (triton.cdiv(s_max, block_s), nblk, b * h)
    _match_kernel[grid](
        x, *_strides(x), h, kt.token_index, kt.width, kt.n_dst, kt.n_src, nblk, s_max, kt.num_dst,
        score, best, assign if write else best, n, kt.group_compact, kt.group_width,
        DH=d, BLOCK_DH=_pow2(d), BLOCK_S=block_s, BLOCK_D=block_d, WRITE_ASSIGN=write,
        IEEE=_ieee(x), num_warps=num_warps, **_stages(num_stages))
    return score, best


def aggregate(x: Tensor, kt, group: Tensor, y: Optional[Tensor] = None, mean: bool = True,
              block_g: int = 128, block_s: int = 32, num_warps: int = 8, num_stages: Optional[int] = None):
    """Merged tokens of every group (special tokens copied to rows 0..n_sp-1).

    x (and y) [B, H, N, d]; group [B*H, nblk, S_MAX] int32 (group of every source slot, -1 at
    padding) -> mean=True: (means of x [B, H, M, d] in x's dtype, means of y or None,
    counts [B, H, M] fp32); mean=False: (sums of x [B*H, M, d] fp32, None, counts [B*H, M]).
    Launch configuration: see ``tune.CANDIDATES`` (block_s also sets how the fp32 sums are grouped).
    """
    x = x if x.stride(-1) == 1 else x.contiguous()
    if y is not None and y.stride(-1) != 1:
        y = y.contiguous()
    b, h, n, d = x.shape
    m = kt.num_merged
    out_dtype = x.dtype if mean else torch.float32
    out_x = _empty(b * h, m, d, dtype=out_dtype, device=x.device)
    out_y = _empty(b * h, m, d, dtype=y.dtype, device=x.device) if y is not None else None
    counts = _empty(b * h, m, dtype=torch.float32, device=x.device)
    sp = kt.special_index
    out_x.view(b, h, m, d)[:, :, :sp.numel()] = x.index_select(2, sp)
    if y is not None:
        out_y.view(b, h, m, d)[:, :, :sp.numel()] = y.index_select(2, sp)
    counts[:, :sp.numel()] = 1.0
    if kt.num_groups > 0:
        yy = y if y is not None else x
        grid = (triton.cdiv(kt.num_groups, block_g), kt.num_regions, b * h)
        _aggregate_kernel[grid](
            x, *_strides(x), yy, *_strides(yy), h,
            kt.token_index, kt.width, kt.n_dst, kt.n_src, kt.n_unmerged, kt.num_regions,
            kt.num_src, kt.num_dst, group, kt.group_compact, kt.group_width,
            out_x, out_y if out_y is not None else out_x, counts, m,
            DH=d, BLOCK_DH=_pow2(d), BLOCK_G=block_g, BLOCK_S=block_s, HAS_Y=y is not None,
            MEAN=mean, IEEE=_ieee(x), num_warps=num_warps, **_stages(num_stages))
    if not mean:
        return out_x, None, counts
    return (out_x.view(b, h, m, d), None if out_y is None else out_y.view(b, h, m, d),
            counts.view(b, h, m))


def deviation(x: Tensor, assign: Tensor, sums: Tensor, counts: Tensor, n_special: int,
              block_n: int = 128, num_warps: int = 8) -> Tensor:
    """x [B, H, N, d], assign [B*H, N] int32, sums [B*H, M, d], counts [B*H, M] -> dev
    [B*H, N] fp32: distance to the merged mean, 0 if merged with nobody, -1 for special tokens."""
    x = x if x.stride(-1) == 1 else x.contiguous()
    b, h, n, d = x.shape
    dev = _empty(b * h, n, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(n, block_n), b * h)
    _deviation_kernel[grid](x, *_strides(x), h, assign, n, sums, counts, sums.shape[1], n_special,
                            dev, DH=d, BLOCK_DH=_pow2(d), BLOCK_N=block_n, num_warps=num_warps)
    return dev


def split_outliers(x: Tensor, assign: Tensor, pos: Tensor, sums: Tensor, counts: Tensor,
                   o_max: int, block_n: int = 64, block_m: int = 128,
                   num_warps: int = 8) -> Tuple[Tensor, Tensor]:
    """Outliers leave their merged tokens and get rows of their own.

    x [B, H, N, d]; assign [B*H, N] int32; pos [B*H, N] int32 (index of the outlier inside its
    head, -1 if not an outlier); sums [B*H, M, d] fp32 and counts [B*H, M] (updated in place)
    -> (merged queries [B, H, M + o_max, d] in x's dtype: M means, then the outliers, rows past
    a head's own outliers zero; new assign [B*H, N] int32).
    """
    x = x if x.stride(-1) == 1 else x.contiguous()
    b, h, n, d = x.shape
    m = sums.shape[1]
    mq = m + o_max
    out = _empty(b * h, mq, d, dtype=x.dtype, device=x.device)
    out[:, m:].zero_()
    new_assign = _empty(*assign.shape, dtype=assign.dtype, device=assign.device)
    _outlier_kernel[(triton.cdiv(n, block_n), b * h)](
        x, *_strides(x), h, assign, pos, n, sums, counts, m, out, mq, new_assign,
        DH=d, BLOCK_DH=_pow2(d), BLOCK_N=block_n, num_warps=num_warps)
    _means_kernel[(triton.cdiv(m, block_m), b * h)](
        sums, counts, m, out, mq, DH=d, BLOCK_DH=_pow2(d), BLOCK_M=block_m, num_warps=num_warps)
    return out.view(b, h, mq, d), new_assign


def unmerge(o: Tensor, assign: Tensor, block_n: int = 128, num_warps: int = 8) -> Tensor:
    """o [B, H, Mq, d] (any strides, unit last), assign [B*H, N] int32 -> [B, H, N, d], a
    permuted view of a contiguous [B, N, H, d] tensor (so ``o.transpose(1, 2).reshape(B, N, H*d)``
    needs no copy)."""
    o = o if o.stride(-1) == 1 else o.contiguous()
    b, h, _, d = o.shape
    n = assign.shape[1]
    out = _empty(b, n, h, d, dtype=o.dtype, device=o.device)
    _unmerge_kernel[(triton.cdiv(n, block_n), h, b)](
        o, *_strides(o), h, assign, n, out, DH=d, BLOCK_DH=_pow2(d), BLOCK_N=block_n, num_warps=num_warps)
    return out.permute(0, 2, 1, 3)
