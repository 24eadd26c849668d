"""Process groups for a sharded forward: spawning N processes or joining torchrun's, with timeouts
and failure reports.

- ``launch(fn, world, device, ...)`` spawns ``world`` processes that each run ``fn(ctx, *args)``
  with a ``RankContext`` (NCCL on CUDA: rank r on cuda:r; gloo on CPU). The launcher hosts the
  TCPStore, so a rank's failure report outlives the rank.
- ``init_from_env(device)`` joins a group started by ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK).

Every process gets NCCL's NVLink multicast off (``NCCL_ENV``) and a collective timeout. A rank
that raises writes "rank r: <error>" to the store and exits non-zero; the ranks still waiting
in a collective get an error from it (gloo: the peer's closed connection; NCCL: the timeout)
and raise ``PeerFailure`` naming the first failed rank; ``launch`` waits for all (terminating
any still alive ``grace_s`` after the timeout) and raises ``DistributedError`` with every
rank's message.
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: NVLink multicast (NVLS) off in every process (it is unavailable on the lent machines).
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
FAILED_KEY = "httm_distributed/failed/"
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(RuntimeError):
    """One or more ranks failed; ``messages[r]`` is rank r's error (None: it finished)."""

    def __init__(self, messages: List[Optional[str]]) -> None:
        self.messages = messages
        lines = [f"  rank {r}: {m.strip().splitlines()[-1] if m else 'ok'}" for r, m in enumerate(messages)]
        super().__init__("sharded forward failed:\n" + "\n".join(lines))


class PeerFailure(RuntimeError):
    """A collective of this rank failed because another rank failed first."""


@dataclass
class RankContext:
    """What a rank's function gets: its rank, the world size, its device, the collective group
    (None: the default one), a gloo group for CPU tensors, the store, the timeout."""

    rank: int
    world: int
    device: torch.device
    cpu_group: Any
    store: Any
    timeout_s: float
    group: Any = None

    def report_failure(self, message: str) -> None:
        """Leave ``message`` for the other ranks (best effort: the store may be gone)."""
        try:
            self.store.set(f"{FAILED_KEY}{self.rank}", message)
        except Exception:                                                  # noqa: BLE001 (best effort)
            pass

    def failures(self) -> List[str]:
        """Failure reports left by other ranks so far (rank order)."""
        found = []
        for r in range(self.world):
            try:
                if r != self.rank and self.store.check([f"{FAILED_KEY}{r}"]):
                    found.append(self.store.get(f"{FAILED_KEY}{r}").decode())
            except Exception:                                              # noqa: BLE001 (store gone)
                break
        return found


def set_nccl_env() -> None:
    os.environ.update(NCCL_ENV)


def _device(kind: str, local_rank: int) -> torch.device:
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank needs cuda:{local_rank} but {torch.cuda.device_count()} GPUs are visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if kind != "cpu":
        raise ValueError(f"device must be 'cuda' or 'cpu', got {kind!r}")
    return torch.device("cpu")


def _init_group(rank: int, world: int, device: torch.device, store, timeout_s: float) -> RankContext:
    """Default group (NCCL on CUDA, gloo on CPU) + a gloo group for CPU tensors. ``store`` None:
    torchrun's environment (env://); the failure reports then use the group's own store."""
    timeout = datetime.timedelta(seconds=timeout_s)
    backend = "nccl" if device.type == "cuda" else "gloo"
    extra = {"device_id": device} if device.type == "cuda" else {}
    if store is None:
        dist.init_process_group(backend, timeout=timeout, **extra)
        store = dist.distributed_c10d._get_default_store()
    else:
        dist.init_process_group(backend, rank=rank, world_size=world, store=store, timeout=timeout, **extra)
    cpu_group = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None
    return RankContext(rank, world, device, cpu_group, store, timeout_s)


def init_from_env(device: str = "cuda", timeout_s: float = DEFAULT_TIMEOUT_S) -> RankContext:
    """Join the group of a ``torchrun`` launch (env RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    set_nccl_env()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dev = _device(device, int(os.environ.get("LOCAL_RANK", rank)))
    return _init_group(rank, world, dev, None, timeout_s)


def run_rank(fn: Callable, ctx: RankContext, args: Sequence) -> Any:
    """``fn(ctx, *args)``. On an error: if another rank reported a failure first, raise
    ``PeerFailure`` naming it (the root cause) instead of this rank's collective error; else
    this rank is the root cause: report it for the others and re-raise."""
    try:
        return fn(ctx, *args)
    except BaseException as exc:
        others = ctx.failures()
        if not others:
            ctx.report_failure(f"rank {ctx.rank}: {type(exc).__name__}: {exc}")
            raise
        here = (str(exc).splitlines() or [""])[0][:200]
        raise PeerFailure(f"rank {ctx.rank} stopped because {others[0]} "
                          f"(here: {type(exc).__name__}: {here})") from exc


def _worker(rank: int, world: int, port: int, device: str, timeout_s: float, threads: int,
            fn: Callable, args: Sequence, results) -> None:
    set_nccl_env()
    if threads:
        torch.set_num_threads(threads)
    code = 0
    ctx = None
    try:
        store = dist.TCPStore("127.0.0.1", port, world + 1, is_master=False,
                              timeout=datetime.timedelta(seconds=timeout_s))
        ctx = _init_group(rank, world, _device(device, rank), store, timeout_s)
        value = run_rank(fn, ctx, args)
        results.put((rank, None, pickle.dumps(value)))                      # bytes: no shared memory
    except BaseException as exc:                                           # noqa: BLE001 (reported)
        results.put((rank, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}", None))
        print(f"[rank {rank}] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if ctx is not None and code == 0:
            dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(code)                                                         # no waiting on a broken group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(fn: Callable, world: int, device: str = "cpu", args: Sequence = (),
           timeout_s: float = DEFAULT_TIMEOUT_S, grace_s: float = 10.0, threads: Optional[int] = None) -> List[Any]:
    """Run ``fn(ctx, *args)`` on ``world`` new processes (``fn`` importable by name: spawn).

    -> every rank's return value (rank order). Raises ``DistributedError`` when any rank failed
    (after all have exited; ranks still alive ``timeout_s + grace_s`` after the first failure are
    terminated). ``threads``: torch threads per process (default: CPU cores / world on CPU).
    """
    set_nccl_env()
    if threads is None and device == "cpu":
        threads = max(1, (os.cpu_count() or 1) // world)
    port = _free_port()
    store = dist.TCPStore("127.0.0.1", port, world + 1, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=timeout_s))
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker, args=(r, world, port, device, timeout_s, threads or 0, fn, args, results),
                         daemon=False) for r in range(world)]
    for p in procs:
        p.start()
    try:
        outcomes = _collect(procs, results, timeout_s + grace_s)
    finally:
        _stop([p for p in procs if p.is_alive()])
        del store
    errors = [outcomes.get(r, (f"exit code {procs[r].exitcode} (no report)", None))[0] for r in range(world)]
    if any(e is not None for e in errors) or any(p.exitcode != 0 for p in procs):
        raise DistributedError([e or (None if p.exitcode == 0 else f"exit code {p.exitcode}")
                                for e, p in zip(errors, procs)])
    return [outcomes[r][1] for r in range(world)]


def _collect(procs, results, deadline_after_failure: float) -> dict:
    """Rank -> (error or None, value) as reports arrive, until every process has exited."""
    outcomes: dict = {}
    failed_at: Optional[float] = None
    while True:
        while not results.empty():
            rank, error, value = results.get()
            outcomes[rank] = (error, pickle.loads(value) if value is not None else None)
            if error is not None and failed_at is None:
                failed_at = time.monotonic()
        alive = [p for p in procs if p.is_alive()]
        if not alive and results.empty():
            return outcomes
        if failed_at is None and any(p.exitcode not in (None, 0) for p in procs):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > deadline_after_failure:
            _stop(alive)
        elif alive:
            alive[0].join(0.05)


def _stop(procs) -> None:
    """Terminate, then kill what is left after 5 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)
