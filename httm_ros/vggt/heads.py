"""Prediction heads: the iterative camera head and the DPT dense head (depth / points)."""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Block, Mlp, compiled_function, compiled_now

# ------------------------------------------------------------------------ camera head

POSE_DIM = 9  # translation (3), quaternion xyzw (4), fov_h, fov_w
BASE_POSE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0)  # no motion, identity rotation, FoV 1 rad


class CameraHead(nn.Module):
    """Refines a 9-d pose encoding per frame from the camera tokens of the last block.

    Each iteration embeds the previous (raw) estimate, turns it into shift/scale/gate for an
    adaptive LayerNorm of the camera tokens, runs the trunk (attention across frames) and adds
    a predicted delta. FoV goes through ReLU; translation and quaternion are linear.
    """

    def __init__(self, dim: int, trunk_depth: int, num_heads: int, mlp_ratio: float,
                 iterations: int, layerscale_init: float = 0.01, base_pose: bool = False) -> None:
        super().__init__()
        self.iterations = iterations
        self.trunk = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, layerscale_init)
                                     for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_DIM)
        # base_pose: the estimate starts at BASE_POSE and the deltas start at zero (no new
        # parameter: a checkpoint's state dict is the same either way).
        self.base_pose = base_pose
        if base_pose and not self.pose_branch.fc2.weight.is_meta:
            nn.init.zeros_(self.pose_branch.fc2.weight)
            nn.init.zeros_(self.pose_branch.fc2.bias)

    @staticmethod
    def activate(raw: Tensor) -> Tensor:
        """[..., 9] raw -> [..., 9] with ReLU on the two FoV entries."""
        return torch.cat((raw[..., :7], F.relu(raw[..., 7:])), dim=-1)

    def forward(self, camera_tokens: Tensor) -> List[Tensor]:
        """camera_tokens [B, S, C] -> list (one per iteration) of pose encodings [B, S, 9]."""
        tokens = self.token_norm(camera_tokens)
        b, s, _ = tokens.shape
        raw: Optional[Tensor] = tokens.new_tensor(BASE_POSE).expand(b, s, -1) if self.base_pose else None
        history = []
        for i in range(self.iterations):
            prev = self.empty_pose_tokens.expand(b, s, -1) if i == 0 else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(prev)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))          # [B, S, 9]
            raw = delta if raw is None else raw + delta
            history.append(self.activate(raw))
        return history


# --------------------------------------------------------------------------- DPT head

INT32_SAFE_ELEMENTS = 1610612736


def resize_bilinear(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize with align_corners=True, split along the batch if the output is huge."""
    total = size[0] * size[1] * x.shape[0] * x.shape[1]
    if total <= INT32_SAFE_ELEMENTS:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    parts = torch.chunk(x, total // INT32_SAFE_ELEMENTS + 1, dim=0)
    return torch.cat([F.interpolate(t, size=size, mode="bilinear", align_corners=True) for t in parts])


def sincos_embedding_2d(h: int, w: int, channels: int, aspect: float, dtype, device) -> Tensor:
    """Sin/cos embedding of a centred, diagonal-normalised uv grid: [channels, h, w].

    u spans +-aspect/diag * (w-1)/w, v spans +-1/diag * (h-1)/h (diag = sqrt(aspect^2 + 1)).
    The first channels/2 encode u, the rest v; each as [sin(pos*omega), cos(pos*omega)] with
    omega_i = 100^(-i/(channels/4)).
    """
    diag = (aspect ** 2 + 1.0) ** 0.5
    span_u, span_v = aspect / diag, 1.0 / diag
    u = torch.linspace(-span_u * (w - 1) / w, span_u * (w - 1) / w, steps=w, dtype=dtype, device=device)
    v = torch.linspace(-span_v * (h - 1) / h, span_v * (h - 1) / h, steps=h, dtype=dtype, device=device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")                              # [h, w] each
    quarter = channels // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)

    def encode(p: Tensor) -> Tensor:
        angles = torch.outer(p.reshape(-1).float(), omega)                    # [h*w, quarter]
        return torch.cat((angles.sin(), angles.cos()), dim=1)

    emb = torch.cat((encode(uu), encode(vv)), dim=-1).view(h, w, channels)
    return emb.permute(2, 0, 1).to(dtype)                                     # [C, h, w]


class ResidualConvUnit(nn.Module):
    """y = relu(x); y + conv2(relu(conv1(y))).

    The reference applies an in-place ReLU to its input before the skip, so the skip carries
    relu(x); this reproduces that.
    """

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(x)
        return self.conv2(F.relu(self.conv1(y))) + y


class FusionBlock(nn.Module):
    """Adds a refined skip (if any), refines, upsamples (to ``size`` or x2), 1x1 conv."""

    def __init__(self, ch: int, has_skip: bool = True) -> None:
        super().__init__()
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(ch)
        self.resConfUnit2 = ResidualConvUnit(ch)
        self.out_conv = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor, skip: Optional[Tensor] = None,
                size: Optional[Tuple[int, int]] = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        return self.out_conv(resize_bilinear(x, size))


class DPTHead(nn.Module):
    """Dense head reading 4 aggregator layers; outputs a map + confidence per pixel.

    activation "exp" (depth) or "inv_log" (points: sign(y)(exp|y|-1)); confidence 1 + exp.
    """

    def __init__(self, dim_in: int, out_dim: int, activation: str, patch_size: int,
                 layers: Sequence[int], features: int, out_channels: Sequence[int],
                 hidden: int = 32) -> None:
        super().__init__()
        if activation not in ("exp", "inv_log"):
            raise ValueError(f"unknown DPT activation {activation!r}")
        self.activation = activation
        self.patch_size = patch_size
        self.layers = tuple(layers)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, 1) for oc in out_channels)
        c0, c1, _, c3 = out_channels
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),   # x4
            nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),   # x2
            nn.Identity(),                                         # x1
            nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),  # /2
        ])
        self.scratch = nn.Module()
        for i, oc in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features, has_skip=i != 4))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, out_dim, 1))

    def forward(self, layer_tokens: dict, patch_start: int, image_hw: Tuple[int, int],
                chunk_size: Optional[int] = None,
                low_precision: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
        """layer_tokens {i: [B, S, P, C]} -> (values [B, S, H, W, out-1], conf [B, S, H, W]) in the
        weights' dtype.

        ``low_precision`` (bf16/fp16): the convolutions under autocast in channels-last layout,
        the output activations and outputs in fp32; None: the weights' dtype throughout (VGGT)."""
        s = layer_tokens[self.layers[0]].shape[1]
        step = s if chunk_size is None or chunk_size >= s else chunk_size
        low = low_precision is not None
        autocast = (torch.autocast(layer_tokens[self.layers[0]].device.type, dtype=low_precision) if low
                    else contextlib.nullcontext())
        with autocast:
            parts = [self._run(layer_tokens, patch_start, image_hw, i, min(i + step, s), low)
                     for i in range(0, s, step)]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def _pos(self, x: Tensor, aspect: float) -> Tensor:
        return x + 0.1 * sincos_embedding_2d(x.shape[-2], x.shape[-1], x.shape[1], aspect, x.dtype, x.device)

    def _features(self, tokens: Tensor, idx: int, grid: Tuple[int, int], aspect: float,
                  channels_last: bool = False) -> Tensor:
        """tokens [N, h*w, C] -> feature map of layer ``idx`` [N, out_channels[idx], h', w']."""
        x = self.norm(tokens.to(self.norm.weight.dtype))
        x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], *grid)
        if channels_last:                     # [N, h*w, C] is channels-last already: no copy
            x = x.contiguous(memory_format=torch.channels_last)
        x = self._pos(self.projects[idx](x), aspect)
        return self.resize_layers[idx](x)

    def _fuse(self, feats: List[Tensor]) -> Tensor:
        sc = self.scratch
        l1, l2, l3, l4 = (getattr(sc, f"layer{i}_rn")(f) for i, f in enumerate(feats, start=1))
        x = sc.refinenet4(l4, size=l3.shape[2:])
        x = sc.refinenet3(x, l3, size=l2.shape[2:])
        x = sc.refinenet2(x, l2, size=l1.shape[2:])
        x = sc.refinenet1(x, l1)
        return sc.output_conv1(x)

    #: Run each chunk's work through ``torch.compile`` at inference (``compile_dense_heads``).
    compiled: bool = False

    def _run(self, layer_tokens: dict, patch_start: int, image_hw: Tuple[int, int],
             start: int, stop: int, low_precision: bool = False) -> Tuple[Tensor, Tensor]:
        """Frames start..stop; ``low_precision`` (under the caller's autocast): channels-last
        feature maps, the output back in fp32 before the activations."""
        tokens = []
        for layer in self.layers:
            t = layer_tokens[layer][:, start:stop, patch_start:]                # [B, s, h*w, C]
            tokens.append(t.reshape(-1, *t.shape[2:]))                         # [B*s, h*w, C]
        b, s = t.shape[:2]
        run = compiled_function("dpt_chunk", _dpt_chunk) if compiled_now(self.compiled) else _dpt_chunk
        values, conf = run(self, tokens, image_hw, low_precision)
        return values.reshape(b, s, *values.shape[1:]), conf.reshape(b, s, *conf.shape[1:])


def _dpt_chunk(head: DPTHead, tokens: List[Tensor], image_hw: Tuple[int, int],
               low_precision: bool) -> Tuple[Tensor, Tensor]:
    """One chunk of frames through a DPT head, a function of (head, tensors) so that one
    ``torch.compile`` serves both heads and every chunk of one shape:
    tokens 4 x [N, h*w, C] -> (values [N, H, W, out-1], conf [N, H, W])."""
    height, width = image_hw
    grid = (height // head.patch_size, width // head.patch_size)
    aspect = width / height
    feats = [head._features(t, idx, grid, aspect, low_precision) for idx, t in enumerate(tokens)]
    x = head._fuse(feats)
    x = resize_bilinear(x, (grid[0] * head.patch_size, grid[1] * head.patch_size))
    x = head.scratch.output_conv2(head._pos(x, aspect))                        # [N, out, H, W]
    x = (x.float() if low_precision else x).permute(0, 2, 3, 1)               # autocast's bf16: back to fp32
    values, conf = x[..., :-1], x[..., -1]
    if head.activation == "exp":
        values = torch.exp(values)
    else:
        values = torch.sign(values) * (torch.exp(values.abs()) - 1.0)
    return values, 1 + conf.exp()


def compile_dense_heads(model: nn.Module, enabled: bool = True) -> int:
    """Run the DPT heads of ``model`` through ``torch.compile`` at inference, a chunk of frames
    at a time (the elementwise work between the convolutions fused: ReLUs, residual adds,
    positional embeddings, resizes, activations; the convolutions stay cuDNN). Each new chunk
    shape compiles on first use. Returns the number of heads switched."""
    heads = [m for m in model.modules() if isinstance(m, DPTHead)]
    for head in heads:
        head.compiled = enabled
    return len(heads)
