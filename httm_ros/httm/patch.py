"""Turn token merging on or off in a VGGT model through its one hook, ``Attention.core``."""

from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import httm_attention, httm_attention_owned
from .kernels.triton_env import resolve_impl
from .records import MergeStats
from .settings import HTTMConfig, UniformMergeConfig
from .uniform import InputMetric, uniform_attention

MergeConfig = Union[HTTMConfig, UniformMergeConfig, None]


class MergeCore:
    """``attn.core`` for one global-attention block: (q, k, v, layout) -> o, recording stats.

    HTTM's implementation ("torch" or "triton", from ``config.impl``) is resolved once per device
    the core sees, not per call. The uniform baseline matches on the block's attention input,
    which ``watch(block)`` hands over through a forward pre-hook (``uniform.InputMetric``)."""

    def __init__(self, config: Union[HTTMConfig, UniformMergeConfig], layer: int, stats: MergeStats) -> None:
        self.config = config
        self.layer = layer
        self.stats = stats
        self.impls: Dict[torch.device, str] = {}
        self.input_metric = InputMetric() if isinstance(config, UniformMergeConfig) else None
        self.hook = None

    def watch(self, block: nn.Module) -> None:
        """Uniform: compute the metric of ``block``'s input before each of its calls."""
        if self.input_metric is not None:
            self.hook = block.register_forward_pre_hook(self.input_metric, with_kwargs=True)

    def unwatch(self) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None

    def impl(self, device: torch.device) -> str:
        """The HTTM implementation this core runs on ``device``."""
        if device not in self.impls:
            self.impls[device] = resolve_impl(self.config.impl, device)
        return self.impls[device]

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layout) -> Tensor:
        metric = self.input_metric.take() if self.input_metric is not None else None
        if layout is None:                                                # nothing known to merge by
            return F.scaled_dot_product_attention(q, k, v)
        if isinstance(self.config, HTTMConfig):
            o, record = httm_attention(q, k, v, layout, self.config, self.layer, impl=self.impl(q.device))
        else:
            o, record = uniform_attention(q, k, v, layout, self.config, layer=self.layer, metric=metric)
        self.stats.add(record)
        return o

    def call_owned(self, qkv: List[Tensor], layout) -> Tensor:
        """As ``__call__`` on [q, k, v] handed over in a list (emptied): HTTM's fast path frees q
        after merging the queries and k, v after merging them (see ``Attention.attend_owned``)."""
        if layout is None or not isinstance(self.config, HTTMConfig):
            q, k, v = qkv
            qkv.clear()
            return self(q, k, v, layout)
        o, record = httm_attention_owned(qkv, layout, self.config, self.layer, impl=self.impl(qkv[0].device))
        self.stats.add(record)
        return o

    def __repr__(self) -> str:
        return f"MergeCore(layer={self.layer}, config={self.config})"


def global_attentions(model: nn.Module) -> List[nn.Module]:
    """The attention modules of the aggregator's global blocks (model: VGGT or its aggregator)."""
    aggregator = getattr(model, "aggregator", model)
    return [block.attn for block in aggregator.global_blocks]


def patch(model: nn.Module, config: MergeConfig) -> MergeStats:
    """Install merging in the global attention layers (``config.layers``, default all) and
    return the collector their calls report to. ``None`` restores dense attention everywhere
    (``core = None``: bit-identical to an unpatched model)."""
    attns = global_attentions(model)
    stats = MergeStats()
    if config is not None and not isinstance(config, (HTTMConfig, UniformMergeConfig)):
        raise TypeError(f"config must be HTTMConfig, UniformMergeConfig or None, got {type(config).__name__}")
    layers = range(len(attns)) if config is None or config.layers is None else config.layers
    bad = [i for i in layers if i >= len(attns)]
    if bad:
        raise ValueError(f"{type(config).__name__}.layers {bad} outside the global blocks 0..{len(attns) - 1}")
    blocks = getattr(model, "aggregator", model).global_blocks
    for i, (block, attn) in enumerate(zip(blocks, attns)):
        if isinstance(attn.core, MergeCore):
            attn.core.unwatch()
        attn.core = MergeCore(config, i, stats) if config is not None and i in layers else None
        if attn.core is not None:
            attn.core.watch(block)
    return stats


def merge_stats(model: nn.Module) -> Optional[MergeStats]:
    """The collector of the merging installed by the last ``patch`` (None when dense)."""
    for attn in global_attentions(model):
        if isinstance(attn.core, MergeCore):
            return attn.core.stats
    return None
