"""Tables the kernels read, derived once from a ``RegionLayout`` (cached per region layout).

The fast path keeps them on the host (pinned) and copies them to the GPU for each attention call
(``kernel_tables(regions, device)``, about 16 bytes per token for both region layouts: 17 MB and under a
millisecond per layer at 1000 frames). Device copies cached across layers sat in GPU memory
through every other phase of the forward and raised its peak by 5-55 MB over dense, measured on
the H100 (BENCHMARKS.md, peak memory by part)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ..regions import RegionLayout


@dataclass(frozen=True)
class KernelTables:
    """int32 copies of a RegionLayout's tables plus per-region counts.

    token_index   [nblk, L]    token at each region slot (destinations first)
    n_dst, n_src  [nblk]       valid destination / source slots of each region (prefixes)
    n_unmerged    [nblk]       sources that stay unmerged (0 when every source merges)
    merge_count   [nblk]       r per region (long, for the torch ranking path)
    src_valid     [nblk, S]    bool
    group_compact [nblk, K+1]  merged row of each region group
    special_index [n_sp]       long (index_select)
    base_assign   [N]          merged row of every destination and special token (sources 0)
    all_merged    every source of every region merges (dst_ratio = 1): no ranking needed
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
    def num_regions(self) -> int:
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

    def map_tables(self, fn) -> "KernelTables":
        """A copy with ``fn`` applied to every table (tensor field)."""
        tables = {f.name: fn(getattr(self, f.name))
                  for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return dataclasses.replace(self, **tables)

    def to(self, device: torch.device) -> "KernelTables":
        """A copy with every table on ``device`` (asynchronous from pinned host memory)."""
        return self.map_tables(lambda t: t.to(device, non_blocking=True))


_CACHE: Dict[int, Tuple[RegionLayout, "KernelTables"]] = {}


def kernel_tables(regions: RegionLayout, device: Optional[torch.device] = None) -> KernelTables:
    """The KernelTables of ``regions``: built once per RegionLayout object on its device (pinned
    when that is the host and CUDA exists) and cached; with another ``device``, an uncached copy
    there that lives as long as the caller holds it."""
    hit = _CACHE.get(id(regions))
    if hit is not None and hit[0] is regions:
        kt = hit[1]
    else:
        kt = _build(regions)
        if len(_CACHE) >= 8:
            _CACHE.clear()
        _CACHE[id(regions)] = (regions, kt)
    if device is None or torch.device(device) == kt.device:
        return kt
    return kt.to(device)


def clear_cache() -> None:
    _CACHE.clear()


def _build(regions: RegionLayout) -> KernelTables:
    n_dst = regions.dst_valid.sum(1)
    n_src = regions.src_valid.sum(1)
    n_unm = n_src - regions.merge_count
    d_max = regions.num_dst
    # destinations and special tokens: their rows do not depend on the tokens
    base = torch.zeros(regions.slot_of_token.numel(), dtype=torch.long, device=regions.token_index.device)
    dst_tok = regions.token_index[:, :d_max][regions.dst_valid]                   # [sum n_dst]
    dst_row = regions.group_compact[:, :d_max][regions.dst_valid]
    base[dst_tok] = dst_row
    base[regions.special_index] = torch.arange(regions.num_special, device=base.device)
    kt = KernelTables(
        token_index=regions.token_index.to(torch.int32).contiguous(),
        n_dst=n_dst.to(torch.int32), n_src=n_src.to(torch.int32), n_unmerged=n_unm.to(torch.int32),
        merge_count=regions.merge_count, src_valid=regions.src_valid,
        group_compact=regions.group_compact.to(torch.int32).contiguous(),
        special_index=regions.special_index, base_assign=base.to(torch.int32),
        num_dst=d_max, num_src=regions.num_src, num_groups=regions.num_groups,
        num_merged=regions.num_merged, all_merged=bool((n_unm == 0).all()),
    )
    if kt.device.type == "cpu" and torch.cuda.is_available():
        kt = kt.map_tables(Tensor.pin_memory)
    return kt
