"""The collectives of a sharded forward, device-agnostic (NCCL on CUDA tensors, gloo on CPU
ones: the same calls), with a log of what moved: bytes and time per call.

Ranks hold different numbers of rows (ragged frame counts, different merged lengths), so
``all_gather_rows`` pads every rank's rows to the longest and strips the padding after; the
lengths travel in a small all-gather of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class GatherRecord:
    """One all-gather: ``layer`` (-1 outside the aggregator), what (``name``), bytes this rank sent
    (padded) and received, seconds from start to the data being there (``synced``: measured
    with device synchronisation, else host time only, which on CUDA misses the transfer)."""

    layer: int
    name: str
    bytes_sent: int
    bytes_received: int
    seconds: float
    synced: bool

    def as_dict(self) -> Dict:
        return dict(self.__dict__)


@dataclass
class GatherLog:
    """Records of every all-gather of a forward; ``sync`` times them with device syncs (benchmarks)."""

    sync: bool = False
    records: List[GatherRecord] = field(default_factory=list)

    def clear(self) -> None:
        self.records.clear()

    def per_layer(self) -> List[Dict]:
        """One row per (layer, name): bytes sent/received and seconds, summed over calls."""
        rows: Dict = {}
        for r in self.records:
            row = rows.setdefault((r.layer, r.name), {"layer": r.layer, "name": r.name, "calls": 0,
                                                      "bytes_sent": 0, "bytes_received": 0, "seconds": 0.0})
            row["calls"] += 1
            row["bytes_sent"] += r.bytes_sent
            row["bytes_received"] += r.bytes_received
            row["seconds"] += r.seconds
        return [rows[k] for k in sorted(rows)]

    def totals(self) -> Dict:
        return {"calls": len(self.records), "bytes_sent": sum(r.bytes_sent for r in self.records),
                "bytes_received": sum(r.bytes_received for r in self.records),
                "seconds": sum(r.seconds for r in self.records), "synced": self.sync}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gather_lengths(n: int, device: torch.device, group=None) -> List[int]:
    """Every rank's ``n`` (one int each, in rank order)."""
    world = dist.get_world_size(group)
    mine = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(out, mine, group=group)
    return [int(t) for t in torch.cat(out).tolist()]


class RowCounts:
    """Every rank's row count per collective name, all-gathered on first use and reused after: in
    one forward every global layer has the same layout, so the counts of layer 0 hold for all
    (one small all-gather and host sync per forward instead of per layer). One per forward."""

    def __init__(self, group=None) -> None:
        self.group = group
        self.counts: Dict[str, List[int]] = {}

    def get(self, name: str, n: int, device: torch.device) -> List[int]:
        if name not in self.counts:
            self.counts[name] = gather_lengths(n, device, self.group)
        mine = self.counts[name][dist.get_rank(self.group)]
        if mine != n:
            raise RuntimeError(f"{name}: {n} rows on this rank, {mine} in an earlier layer of this forward")
        return self.counts[name]


class PendingGather:
    """An all-gather in flight (``all_gather_rows(..., async_op=True)``); ``wait()`` -> the rows."""

    def __init__(self, work, parts: List[Tensor], lengths: Sequence[int], dim: int, record: GatherRecord,
                 log: Optional[GatherLog], start: float, device: torch.device) -> None:
        self.work, self.parts, self.lengths, self.dim = work, parts, lengths, dim
        self.record, self.log, self.start, self.device = record, log, start, device

    def wait(self) -> Tensor:
        self.work.wait()
        if self.log is not None:
            if self.log.sync:
                _sync(self.device)
            self.record.seconds = time.perf_counter() - self.start
            self.log.records.append(self.record)
        pieces = [p.narrow(self.dim, 0, n) for p, n in zip(self.parts, self.lengths)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=self.dim)


def all_gather_rows(x: Tensor, dim: int, group=None, log: Optional[GatherLog] = None, layer: int = -1,
                    name: str = "", lengths: Optional[Sequence[int]] = None, async_op: bool = False):
    """Concatenate every rank's ``x`` along ``dim`` in rank order (the other dims must agree).

    x [..., n_r, ...] -> [..., sum_r n_r, ...]. ``lengths``: every rank's n_r when the caller
    knows them (else one small all-gather finds them). ``async_op``: return a ``PendingGather``.
    """
    if log is not None and log.sync:
        _sync(x.device)
    start = time.perf_counter()
    world = dist.get_world_size(group)
    lengths = list(lengths) if lengths is not None else gather_lengths(x.shape[dim], x.device, group)
    longest = max(lengths)
    if x.shape[dim] < longest:
        pad = list(x.shape)
        pad[dim] = longest - x.shape[dim]
        x = torch.cat((x, x.new_zeros(pad)), dim=dim)
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(world)]
    work = dist.all_gather(parts, x, group=group, async_op=True)
    size = x.numel() * x.element_size()
    record = GatherRecord(layer, name, size, size * (world - 1), 0.0, bool(log is not None and log.sync))
    pending = PendingGather(work, parts, lengths, dim, record, log, start, x.device)
    return pending if async_op else pending.wait()
