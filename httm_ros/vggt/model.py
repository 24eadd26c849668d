"""VGGT: aggregator + camera head + depth head + point head (track head not built)."""

from __future__ import annotations

import contextlib
from typing import Dict, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from .aggregator import Aggregator
from .config import VGGTConfig
from .heads import CameraHead, DPTHead

HEAD_NAMES = ("camera", "depth", "point")


class VGGT(nn.Module):
    """Weight-compatible VGGT. ``VGGT()`` is VGGT-1B; pass a ``VGGTConfig`` for other sizes."""

    def __init__(self, config: Optional[VGGTConfig] = None) -> None:
        super().__init__()
        cfg = config if config is not None else VGGTConfig()
        self.config = cfg
        self.aggregator = Aggregator(cfg)
        dim = 2 * cfg.embed_dim
        self.camera_head = CameraHead(dim, cfg.camera_trunk_depth, cfg.camera_num_heads,
                                      cfg.camera_mlp_ratio, cfg.camera_iterations, cfg.layerscale_init,
                                      cfg.camera_base_pose)
        dpt = dict(patch_size=cfg.patch_size, layers=cfg.dpt_layers, features=cfg.dpt_features,
                   out_channels=cfg.dpt_out_channels, hidden=cfg.dpt_hidden)
        self.point_head = DPTHead(dim, 4, "inv_log", **dpt)
        self.depth_head = DPTHead(dim, 2, "exp", **dpt)

    @classmethod
    def from_checkpoint(cls, path, config: Optional[VGGTConfig] = None,
                        device="cpu", dtype: Optional[torch.dtype] = None) -> "VGGT":
        """Build on the meta device and load ``path`` (see ``load_checkpoint``) without a second copy.

        Without ``config`` the one stored in the file's metadata is used (``save_checkpoint``),
        else VGGT-1B.
        """
        from .checkpoint import checkpoint_config, load_checkpoint

        if config is None:
            config = checkpoint_config(path)
        with torch.device("meta"):
            model = cls(config)
        load_checkpoint(model, path)
        return model.to(device=device, dtype=dtype).eval()

    def _aggregator_context(self, images: Tensor):
        name = self.config.cuda_autocast_dtype
        if images.device.type != "cuda" or name is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=getattr(torch, name))

    def forward(self, images: Tensor, heads: Sequence[str] = HEAD_NAMES,
                return_aggregator_layers: Iterable[int] = ()) -> Dict[str, Tensor]:
        """images [S, 3, H, W] or [B, S, 3, H, W] in [0, 1] -> dict (B always present):

        pose_enc [B, S, 9]; depth [B, S, H, W, 1], depth_conf [B, S, H, W];
        world_points [B, S, H, W, 3], world_points_conf [B, S, H, W];
        only for the requested ``heads`` ("camera", "depth", "point").
        ``return_aggregator_layers`` adds ``aggregator_layers`` {i: [B, S, P, 2C]}.
        """
        heads = tuple(heads)
        unknown = [h for h in heads if h not in HEAD_NAMES]
        if unknown:
            raise ValueError(f"unknown heads {unknown}; choose from {HEAD_NAMES}")
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5:
            raise ValueError(f"expected images [S, 3, H, W] or [B, S, 3, H, W], got {tuple(images.shape)}")
        cfg = self.config
        extra = [i + cfg.depth if i < 0 else i for i in return_aggregator_layers]
        keep = set(extra)
        if "camera" in heads:
            keep.add(cfg.depth - 1)
        if "depth" in heads or "point" in heads:
            keep.update(cfg.dpt_layers)
        with self._aggregator_context(images):
            layers = self.aggregator(images, keep_layers=sorted(keep))
        out = self._run_heads(layers, heads, tuple(images.shape[-2:]))
        if extra:
            out["aggregator_layers"] = {i: layers[i] for i in extra}
        return out

    def _run_heads(self, layers: Dict[int, Tensor], heads, image_hw) -> Dict[str, Tensor]:
        cfg = self.config
        ps = self.aggregator.patch_start
        out: Dict[str, Tensor] = {}
        device_type = next(iter(layers.values())).device.type if layers else "cpu"
        with torch.autocast(device_type, enabled=False):
            if "camera" in heads:
                cam = layers[cfg.depth - 1][:, :, 0]                               # [B, S, 2C]
                cam = cam.to(self.camera_head.token_norm.weight.dtype)
                out["pose_enc"] = self.camera_head(cam)[-1]
            low = getattr(torch, cfg.dpt_cuda_dtype) if cfg.dpt_cuda_dtype and device_type == "cuda" else None
            if "depth" in heads:
                depth, conf = self.depth_head(layers, ps, image_hw, cfg.dpt_chunk_size, low)
                out["depth"], out["depth_conf"] = depth, conf
            if "point" in heads:
                pts, conf = self.point_head(layers, ps, image_hw, cfg.dpt_chunk_size, low)
                out["world_points"], out["world_points_conf"] = pts, conf
        return out
