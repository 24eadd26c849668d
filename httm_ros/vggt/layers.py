"""Transformer building blocks shared by the DINO backbone, the aggregator and the camera head.

Parameter names (``qkv``, ``q_norm``, ``k_norm``, ``proj``, ``norm1``, ``ls1``, ``mlp.fc1`` ...)
follow the official VGGT state dict so that its checkpoint loads unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TokenLayout:
    """How the tokens of one attention call are laid out.

    The sequence is ``frames`` consecutive frames of ``tokens_per_frame`` tokens each;
    inside a frame, ``patch_start`` special tokens (camera + registers) come first, then the
    ``grid = (h, w)`` patch tokens in row-major order. Frame attention sees ``frames=1``.

    A sharded forward (``httm_ros.distributed``) runs frames ``[frame_offset, frame_offset +
    frames)`` of a sequence of ``total_frames`` (None: this layout is the whole sequence) on
    one process; merging uses them to place its temporal regions and first-frame anchors.
    """

    frames: int
    tokens_per_frame: int
    patch_start: int
    grid: Tuple[int, int]
    frame_offset: int = 0
    total_frames: Optional[int] = None

    def __post_init__(self) -> None:
        h, w = self.grid
        if self.tokens_per_frame != self.patch_start + h * w:
            raise ValueError(
                f"TokenLayout: tokens_per_frame={self.tokens_per_frame} != patch_start "
                f"{self.patch_start} + {h}*{w}"
            )
        if self.frame_offset < 0 or self.frame_offset + self.frames > self.sequence_frames:
            raise ValueError(f"TokenLayout: frames [{self.frame_offset}, {self.frame_offset + self.frames}) "
                             f"outside a sequence of {self.sequence_frames}")

    @property
    def sequence_frames(self) -> int:
        """Frames of the whole sequence this layout is a part of."""
        return self.frames if self.total_frames is None else self.total_frames

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def patches_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]


LOG = logging.getLogger("httm_ros.vggt")

# ------------------------------------------------------------------ SDPA backend choice

_SDPA_STATE = {"priority_ok": True}


def _sdpa_priority():
    """Context preferring cuDNN > flash > efficient > math (CUDA only; ``HTTM_SDPA=default``
    keeps torch's own order). On an H100, [1, 16, N, 64] bf16: cuDNN ~410 TFLOP/s, flash ~320."""
    if os.environ.get("HTTM_SDPA", "cudnn") == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
             SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    try:
        return sdpa_kernel(order, set_priority=True)
    except TypeError:                                                    # torch without set_priority
        return contextlib.nullcontext()


def sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
    """``F.scaled_dot_product_attention`` with the fastest backend first on CUDA.

    q [B, h, Nq, d], k/v [B, h, Nk, d] -> [B, h, Nq, d]. If the preferred order fails for
    anything but memory, torch's default choice is used from then on (one warning).
    """
    if q.device.type != "cuda" or not _SDPA_STATE["priority_ok"]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    try:
        with _sdpa_priority():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        _SDPA_STATE["priority_ok"] = False
        LOG.warning("SDPA with cuDNN first failed (%s); using torch's default backend order", exc)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


# ------------------------------------------------------------- token-chunked inference

#: Inference (no autograd) on more than this many rows of [B*N, C] runs the token-wise parts
#: of a block (norms, qkv, q/k norm + RoPE, proj, MLP) chunk by chunk: the full-size fp32
#: temporaries (qkv 3C, MLP hidden 4C and its GELU, RoPE intermediates) never exist at once.
CHUNK_ROWS = 1 << 15


def row_chunks(b: int, n: int, rows: int) -> Iterator[Tuple[slice, slice]]:
    """(batch slice, token slice) pieces of [b, n] with at most ``rows`` rows each (at least a
    whole sequence when one fits, so frame attention chunks over frames)."""
    if b * n <= rows:
        yield slice(0, b), slice(0, n)
    elif n <= rows:
        step = rows // n
        for b0 in range(0, b, step):
            yield slice(b0, min(b0 + step, b)), slice(0, n)
    else:
        for bi in range(b):
            for n0 in range(0, n, rows):
                yield slice(bi, bi + 1), slice(n0, min(n0 + rows, n))


def chunked_inference(x: Tensor) -> bool:
    """x [B, N, C]: big enough, and no autograd graph to keep."""
    return not torch.is_grad_enabled() and x.shape[0] * x.shape[1] > CHUNK_ROWS


# ----------------------------------------------------------------------------- RoPE


class RotaryEmbedding2D(nn.Module):
    """2D rotary embedding: first half of the head dim turns with the row, second with the column.

    Within each half the rotation is "rotate-half" style: channel j pairs with j + half/2,
    angle = position * base^(-2i/half) for pair i. No parameters.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)
        # Table size for the positions of the current forward, set by the aggregator from the
        # patch grid (max(h, w) + 1) so that no block reads ``pos.max()`` from the device (a
        # host sync per block). A larger table gathers the same values: outputs are unchanged.
        self.position_bound: Optional[int] = None

    def _tables(self, half: int, max_pos: int, device, dtype) -> Tuple[Tensor, Tensor]:
        # cos/sin tables [max_pos, half]; angles in fp32, then cast (as the reference does)
        exps = torch.arange(0, half, 2, device=device).float() / half
        inv_freq = 1.0 / (self.base ** exps)                                   # [half/2]
        angles = torch.outer(torch.arange(max_pos, device=device, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1).to(dtype)                 # [max_pos, half]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    def _rotate_1d(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # x [B, H, N, half]; pos [B, N] int -> cos/sin gathered to [B, 1, N, half]
        c = F.embedding(pos, cos)[:, None]
        s = F.embedding(pos, sin)[:, None]
        return x * c + self._rotate_half(x) * s

    def tables(self, x: Tensor, pos: Tensor) -> Tuple[Tensor, Tensor]:
        """cos/sin tables for every position in ``pos`` in x's dtype (shared by q and k)."""
        bound = self.position_bound if self.position_bound is not None else int(pos.max()) + 1
        return self._tables(x.shape[-1] // 2, bound, x.device, x.dtype)

    def forward(self, x: Tensor, pos: Tensor, tables: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        """x [B, heads, N, D], pos [B, N, 2] (row, col) integers -> [B, heads, N, D]."""
        cos, sin = self.tables(x, pos) if tables is None else tables
        rows, cols = x.chunk(2, dim=-1)
        rows = self._rotate_1d(rows, pos[..., 0], cos, sin)
        cols = self._rotate_1d(cols, pos[..., 1], cos, sin)
        return torch.cat((rows, cols), dim=-1)


def grid_positions(h: int, w: int, patch_start: int, device=None) -> Tensor:
    """RoPE positions of one frame: [patch_start + h*w, 2] (row, col).

    Special tokens sit at (0, 0); patch (r, c) sits at (r + 1, c + 1).
    """
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    patches = torch.stack((rows, cols), dim=-1) + 1
    special = torch.zeros(patch_start, 2, dtype=patches.dtype, device=device)
    return torch.cat((special, patches), dim=0)


# ------------------------------------------------------------------------ attention

AttentionCore = Callable[[Tensor, Tensor, Tensor, Optional[TokenLayout]], Tensor]


class Attention(nn.Module):
    """Multi-head self-attention with optional qk LayerNorm and 2D RoPE.

    ``self.core`` is a hook: None means dense ``F.scaled_dot_product_attention``; otherwise
    ``core(q, k, v, layout)`` is called with q, k, v ``[B, heads, N, head_dim]`` (after qk-norm
    and RoPE, all in v's dtype) and must return ``[B, heads, N, head_dim]``.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False,
                 rope: Optional[RotaryEmbedding2D] = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=True)
        self.rope = rope
        self.core: Optional[AttentionCore] = None

    def project(self, x: Tensor, pos: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """x [B, N, C] (already normed) -> q, k, v [B, heads, N, d]: qkv, q/k norm, RoPE (one
        cos/sin table for q and k), q and k cast to v's dtype."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                     # each [B, h, N, d]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            tables = self.rope.tables(q, pos)
            q, k = self.rope(q, pos, tables), self.rope(k, pos, tables)
        return q.to(v.dtype), k.to(v.dtype), v

    def forward(self, x: Tensor, pos: Optional[Tensor] = None,
                layout: Optional[TokenLayout] = None) -> Tensor:
        b, n, c = x.shape                                                  # x [B, N, C]
        o = self.attend(*self.project(x, pos), layout)
        return self.proj(o.transpose(1, 2).reshape(b, n, c))               # [B, N, C]

    def attend(self, q: Tensor, k: Tensor, v: Tensor, layout: Optional[TokenLayout]) -> Tensor:
        """q, k, v [B, h, N, d] -> o [B, h, N, d]: the hook, or SDPA (fastest backend first)."""
        if self.core is None:
            return sdpa(q, k, v)
        return self.core(q, k, v, layout)

    def attend_owned(self, qkv: List[Tensor], layout: Optional[TokenLayout]) -> Tensor:
        """``attend`` on [q, k, v] handed over in a list that the call empties: a hook with a
        ``call_owned(qkv, layout)`` method (HTTM's fast path) can then free q, k and v as soon as
        it has merged them, instead of holding them until it returns."""
        owned = getattr(self.core, "call_owned", None)
        if owned is not None:
            return owned(qkv, layout)
        q, k, v = qkv
        qkv.clear()
        if self.core is None:
            return sdpa(q, k, v)
        return self.core(q, k, v, layout)

class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int, out_dim: Optional[int] = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layerscale_init: float,
                 norm_eps: float = 1e-5, qk_norm: bool = False,
                 rope: Optional[RotaryEmbedding2D] = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layerscale_init)

    #: Run the token-wise passes through ``torch.compile`` (inference only; see ``compile_tokenwise``).
    compiled: bool = False

    def _pass(self, name: str) -> Callable:
        """One token-wise pass of this block: the compiled function when ``compiled`` and no
        autograd graph is recorded, else the eager one (same arithmetic)."""
        if compiled_now(self.compiled):
            return compiled_function(name, _TOKENWISE[name])
        return _TOKENWISE[name]

    def forward(self, x: Tensor, pos: Optional[Tensor] = None,
                layout: Optional[TokenLayout] = None) -> Tensor:
        """x [B, N, C], pos [B, N, 2] or None -> [B, N, C]."""
        if chunked_inference(x):
            return self._forward_chunked(x, pos, layout)
        q, k, v = self._pass("qkv")(self, x, pos)
        o = self.attn.attend(q, k, v, layout)                              # [B, h, N, d]
        x = self._pass("attention_residual")(self, x, o.transpose(1, 2))
        return self._pass("mlp_residual")(self, x)

    def _forward_chunked(self, x: Tensor, pos: Optional[Tensor], layout: Optional[TokenLayout]) -> Tensor:
        """Inference on long inputs, x [B, N, C] -> [B, N, C]: the same arithmetic per token, but
        token-wise work runs over chunks of ``CHUNK_ROWS`` rows, so besides x and the output
        only q, k, v and the attention output exist at full size (x is not modified)."""
        b, n, c = x.shape
        qkv = list(self._project_chunked(x, pos))
        o = self.attn.attend_owned(qkv, layout)                            # [B, h, N, d]; qkv emptied
        o = o.transpose(1, 2)                                              # [B, N, h, d]
        residual, mlp = self._pass("attention_residual"), self._pass("mlp_residual")
        y = None
        for bs, ns in row_chunks(b, n, CHUNK_ROWS):
            part = residual(self, x[bs, ns], o[bs, ns])
            if y is None:
                y = torch.empty(b, n, c, dtype=part.dtype, device=x.device)
            y[bs, ns] = part
        del o
        for bs, ns in row_chunks(b, n, CHUNK_ROWS):
            y[bs, ns] = mlp(self, y[bs, ns])
        return y

    def _project_chunked(self, x: Tensor, pos: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, h, N, d] (contiguous) of the attention input, computed over token chunks."""
        b, n, _ = x.shape
        attn, project = self.attn, self._pass("qkv")
        q = k = v = None
        for bs, ns in row_chunks(b, n, CHUNK_ROWS):
            qc, kc, vc = project(self, x[bs, ns], None if pos is None else pos[bs, ns])
            if q is None:
                q, k, v = (torch.empty(b, attn.num_heads, n, attn.head_dim, dtype=vc.dtype, device=x.device)
                           for _ in range(3))
            q[bs, :, ns] = qc
            k[bs, :, ns] = kc
            v[bs, :, ns] = vc
        return q, k, v


# ------------------------------------------------------------- token-wise passes of a block
#
# Everything in a block but the attention core: norms, projections, q/k norm, RoPE, LayerScale,
# residuals, MLP. Written as functions of (block, tensors) so that one ``torch.compile`` of each
# serves every block of the model (dynamo inlines the module and lifts its parameters to graph
# inputs): a compile per input shape, not per block.


def _qkv_pass(block: Block, x: Tensor, pos: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """x [B, N, C] -> q, k, v [B, h, N, d] of ``attn(norm1 x)``."""
    return block.attn.project(block.norm1(x), pos)


def _attention_residual_pass(block: Block, x: Tensor, o: Tensor) -> Tensor:
    """x [B, N, C], attention output o [B, N, h, d] -> x + ls1(proj(o))."""
    return x + block.ls1(block.attn.proj(o.reshape(x.shape)))


def _mlp_residual_pass(block: Block, x: Tensor) -> Tensor:
    """x [B, N, C] -> x + ls2(mlp(norm2 x))."""
    return x + block.ls2(block.mlp(block.norm2(x)))


_TOKENWISE = {"qkv": _qkv_pass, "attention_residual": _attention_residual_pass, "mlp_residual": _mlp_residual_pass}
_COMPILED: dict = {}
_COMPILE_SETTINGS: dict = {"backend": "inductor", "mode": None, "failed": None}
_FORCE_EAGER = contextvars.ContextVar("httm_tokenwise_eager", default=False)

#: Distinct input shapes one process may compile per pass (frame and global blocks, DINO, the
#: camera trunk, the chunks of long inputs, a few window sizes); beyond it dynamo runs eager.
COMPILE_SHAPE_LIMIT = 64

#: ``torch.compile`` modes of the compiled passes: None (inductor's default: fused elementwise
#: work around cuBLAS GEMMs) or "max-autotune-no-cudagraphs" (GEMMs and convolutions autotuned
#: against Triton templates, which can carry the elementwise epilogue: bias + GELU, LayerScale +
#: residual; each new shape pays the tuning in its first forward).
COMPILE_MODES = (None, "max-autotune-no-cudagraphs")


def compiled_now(enabled: bool) -> bool:
    """Whether a module switched to compiled passes (``enabled``) runs them now: inference (no
    autograd graph), not inside ``eager_tokenwise``, and no compile failure in this process."""
    return enabled and not torch.is_grad_enabled() and not _FORCE_EAGER.get() \
        and _COMPILE_SETTINGS["failed"] is None


def compiled_function(name: str, fn: Callable) -> Callable:
    """``torch.compile`` of ``fn`` (static shapes, this process's backend and mode), cached
    under ``name``; a compile failure falls back to ``fn`` for good (``compile_failure``)."""
    compiled_fn = _COMPILED.get(name)
    if compiled_fn is None:
        import torch._dynamo

        config = torch._dynamo.config
        limit_name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit_name, max(getattr(config, limit_name), COMPILE_SHAPE_LIMIT))
        options = {"mode": _COMPILE_SETTINGS["mode"]} if _COMPILE_SETTINGS["mode"] else {}
        compiled = torch.compile(fn, dynamic=False, backend=_COMPILE_SETTINGS["backend"], **options)
        compiled_fn = _COMPILED[name] = functools.partial(_guarded, compiled, fn)
    return compiled_fn


def _guarded(compiled: Callable, eager: Callable, *args):
    """The compiled pass; if compiling fails (no C compiler, a backend error; not out of memory),
    one warning, this pass runs eager and every later one too (``compile_failure``)."""
    try:
        return compiled(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:                                             # noqa: BLE001 (any backend error)
        _COMPILE_SETTINGS["failed"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        LOG.warning("torch.compile failed (%s); the compiled passes run eager from now on",
                    _COMPILE_SETTINGS["failed"])
        return eager(*args)


def compile_failure() -> Optional[str]:
    """Why the compiled token-wise passes were given up in this process (None: they were not)."""
    return _COMPILE_SETTINGS["failed"]


def compile_tokenwise(model: nn.Module, enabled: bool = True) -> int:
    """Run the token-wise passes of every ``Block`` in ``model`` through ``torch.compile`` at
    inference (fused norms, RoPE, LayerScale and residuals; the attention core, HTTM's merging
    included, stays eager). Each new input shape compiles on first use (seconds on a GPU: the
    node's warm-up forward pays it; ``eager_tokenwise`` keeps other shapes eager). Returns the
    number of blocks switched."""
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.compiled = enabled
    return len(blocks)


def set_compile_backend(backend: str = "inductor", mode: Optional[str] = None) -> None:
    """torch.compile backend (inductor; tests use "aot_eager") and mode (``COMPILE_MODES``) of
    the compiled passes; a change drops the compiled functions of this process."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    if (backend, mode) != (_COMPILE_SETTINGS["backend"], _COMPILE_SETTINGS["mode"]):
        _COMPILE_SETTINGS.update(backend=backend, mode=mode)
        _COMPILED.clear()
    _COMPILE_SETTINGS["failed"] = None


@contextlib.contextmanager
def eager_tokenwise() -> Iterator[None]:
    """Inside: compiled blocks run their eager passes (a shape that was not warmed up must not
    stall a stream with a compile)."""
    token = _FORCE_EAGER.set(True)
    try:
        yield
    finally:
        _FORCE_EAGER.reset(token)
