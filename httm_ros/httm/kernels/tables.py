"""Tables the kernels read, derived once from a ``BlockPlan`` (cached per plan).

The fast path keeps them on the host (pinned) and copies them to the GPU for each attention call
(``kernel_plan(plan, device)``, about 16 bytes per token for both plans: 17 MB and under a
millisecond per layer at 1000 frames). Device copies cached across layers sat in GPU memory
through every other phase of the forward and raised its peak by 5-55 MB over dense, measured on
the H100 (BENCHMARKS.md, peak memory by part)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ..blocks import BlockPlan


@dataclass(frozen=True)
class KernelPlan:
    """int32 copies of a BlockPlan's tables plus per-block counts.

    token_index   [nblk, L]    token at each block slot (destinations first)
    n_dst, n_src  [nblk]       valid destination / source slots of each block (prefixes)
    n_unmerged    [nblk]       sources that stay unmerged (0 when every source merges)
    merge_count   [nblk]       r per block (long, for the torch ranking path)
    src_valid     [nblk, S]    bool
    group_compact [nblk, K+1]  merged row of each block group
    special_index [n_sp]       long (index_select)
    base_assign   [N]          merged row of every destination and special token (sources 0)
    all_merged    every source of every block merges (dst_ratio = 1): no ranking needed
    """

    token_index: Tensor
    n_dst: Tensor
    n_src: Tensor
    n_unmerged: Tensor
    merge_count: Tensor
    src_valid: Tensor
    group_compact: Tensor
    special_index: Tensor
    base_assign: Tensor
    num_dst: int
    num_src: int
    num_groups: int
    num_merged: int
    all_merged: bool

    @property
    def num_blocks(self) -> int:
        return self.token_index.shape[0]

    @property
    def width(self) -> int:
        return self.token_index.shape[1]

    @property
    def group_width(self) -> int:
        return self.group_compact.shape[1]

    @property
    def num_special(self) -> int:
        return self.special_index.numel()

    @property
    def device(self) -> torch.device:
        return self.token_index.device

    def map_tables(self, fn) -> "KernelPlan":
        """A copy with ``fn`` applied to every table (tensor field)."""
        tables = {f.name: fn(getattr(self, f.name))
                  for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return dataclasses.replace(self, **tables)

    def to(self, device: torch.device) -> "KernelPlan":
        """A copy with every table on ``device`` (asynchronous from pinned host memory)."""
        return self.map_tables(lambda t: t.to(device, non_blocking=True))


_CACHE: Dict[int, Tuple[BlockPlan, KernelPlan]] = {}


def kernel_plan(plan: BlockPlan, device: Optional[torch.device] = None) -> KernelPlan:
    """The KernelPlan of ``plan``: built once per plan object on the plan's device (pinned when
    that is the host and CUDA exists) and cached; with another ``device``, an uncached copy there
    that lives as long as the caller holds it."""
    hit = _CACHE.get(id(plan))
    if hit is not None and hit[0] is plan:
        kp = hit[1]
    else:
        kp = _build(plan)
        if len(_CACHE) >= 8:
            _CACHE.clear()
        _CACHE[id(plan)] = (plan, kp)
    if device is None or torch.device(device) == kp.device:
        return kp
    return kp.to(device)


def clear_cache() -> None:
    _CACHE.clear()


def _build(plan: BlockPlan) -> KernelPlan:
    n_dst = plan.dst_valid.sum(1)
    n_src = plan.src_valid.sum(1)
    n_unm = n_src - plan.merge_count
    d_max = plan.num_dst
    # destinations and special tokens: their rows do not depend on the tokens
    base = torch.zeros(plan.slot_of_token.numel(), dtype=torch.long, device=plan.token_index.device)
    dst_tok = plan.token_index[:, :d_max][plan.dst_valid]                   # [sum n_dst]
    dst_row = plan.group_compact[:, :d_max][plan.dst_valid]
    base[dst_tok] = dst_row
    base[plan.special_index] = torch.arange(plan.num_special, device=base.device)
    kp = KernelPlan(
        token_index=plan.token_index.to(torch.int32).contiguous(),
        n_dst=n_dst.to(torch.int32), n_src=n_src.to(torch.int32), n_unmerged=n_unm.to(torch.int32),
        merge_count=plan.merge_count, src_valid=plan.src_valid,
        group_compact=plan.group_compact.to(torch.int32).contiguous(),
        special_index=plan.special_index, base_assign=base.to(torch.int32),
        num_dst=d_max, num_src=plan.num_src, num_groups=plan.num_groups,
        num_merged=plan.num_merged, all_merged=bool((n_unm == 0).all()),
    )
    if kp.device.type == "cpu" and torch.cuda.is_available():
        kp = kp.map_tables(Tensor.pin_memory)
    return kp
