"""The one adapter between :mod:`.pose_graph` records and GTSAM (iSAM2 over Similarity3, on its own thread).

    backend = make_backend(config)            # None (and one log line) when gtsam is not installed
    backend.submit(graph, new_keys, new_factors)   # returns at once; the worker thread optimises
    backend.wait(); poses = backend.poses     # key -> [4,4] Sim(3), the latest accepted estimate
    backend.flush(graph)                      # end of the stream: loops still pending are rejected

Each job adds the new variables (initial value: the graph's ``initial``), the new factors (a
``PriorFactorSimilarity3`` for the first keyframe, ``BetweenFactorSimilarity3`` with a diagonal noise
in GTSAM's tangent order [rot, trans, log-scale] wrapped in a robust kernel, Cauchy or Huber) and
runs one iSAM2 update. Loop consistency (``consistent_loops`` > 0, the default): a new loop first
waits in ``graph.pending`` until another verified loop close in time agrees with it
(:func:`.pose_graph.cycle_chi2`); then both enter iSAM2 together; a pending loop left
``consistency_window`` keyframes behind (or still pending at ``flush``) is rejected with the reason.
A loop that enters iSAM2 is checked after the update: when the
loop's whitened squared error stays above ``max_loop_chi2`` (the graph cannot agree with it even
with the kernel), the factor is removed again, the loop is counted in ``graph.rejected`` and the
published poses stay those from before the loop (the map is not touched). With
``LoopClosureConfig.batch_resolve`` a loop that fails those gates after iSAM2's relinearisations gets
a second solve: Levenberg-Marquardt over the whole graph from iSAM2's estimate (iSAM2 stops short
when a loop exposes a large drift), judged by the same gates; if it passes, iSAM2 is rebuilt on it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from .pose_graph import Between, LoopClosureConfig, PoseGraph, Prior, cycle_chi2, sim3, sim3_scale

LOG = logging.getLogger(__name__)


def _gtsam():
    """The gtsam module, imported on first use (never at import time: the node starts without it), or None."""
    try:
        import gtsam
    except ImportError:
        return None
    return gtsam


def available() -> bool:
    return _gtsam() is not None


def _require():
    gtsam = _gtsam()
    if gtsam is None:
        raise ImportError("gtsam is not installed (pip install gtsam==4.3.0)")
    return gtsam


def make_backend(config: LoopClosureConfig) -> Optional["GtsamBackend"]:
    """A started backend, or None with one clear log line when gtsam is missing."""
    if not available():
        LOG.warning("loop closure requested but gtsam is not installed (pip install gtsam==4.3.0): "
                    "running without a pose graph")
        return None
    return GtsamBackend(config)


def to_gtsam(t: np.ndarray) -> "gtsam.Similarity3":
    """[4,4] (sR | t) -> gtsam.Similarity3 (acts as s(R p + t'), so t' = t / s)."""
    gtsam, s = _require(), sim3_scale(t)
    return gtsam.Similarity3(gtsam.Rot3(t[:3, :3] / s), np.asarray(t[:3, 3] / s, np.float64), s)


def from_gtsam(g: "gtsam.Similarity3") -> np.ndarray:
    m = g.matrix()                                     # [R t'; 0 1/s]
    s = 1.0 / m[3, 3]
    return sim3(m[:3, :3], s * m[:3, 3], s)


class GtsamBackend:
    """iSAM2 on a worker thread; ``poses`` / ``version`` / ``update_s`` are read by the stream."""

    def __init__(self, config: LoopClosureConfig) -> None:
        self.config = config
        gtsam = _require()
        params = gtsam.ISAM2Params()
        params.setRelinearizeThreshold(0.01)
        self.isam = gtsam.ISAM2(params)
        self.poses: Dict[int, np.ndarray] = {}
        self.version = 0
        self.update_s: List[float] = []
        self._windows: List[Between] = []             # window factors in iSAM2 (worker thread only)
        self._factors: List = []                       # every record in iSAM2 (worker thread only)
        self._accepted: List[Between] = []             # loops in iSAM2: partners of the consistency test
        self._order: Dict[int, int] = {}               # key -> position in time (worker thread only)
        self._disagreed: Dict[int, int] = {}           # id(pending loop) -> most partners that disagreed
        self.batch_solves: List[float] = []            # seconds of each batch re-solve (see _batch)
        self._jobs: "queue.Queue" = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="pose_graph", daemon=True)
        self._thread.start()

    def submit(self, graph: PoseGraph, new_keys: Sequence[int], factors: Sequence) -> None:
        """Queue new variables and factors (Prior / Between records); never blocks on the solver."""
        values = {k: graph.initial[k].copy() for k in new_keys}
        self._jobs.put((self._run, (graph, values, list(factors))))

    def flush(self, graph: PoseGraph) -> None:
        """Queue the end of the stream: every loop still pending is rejected (no later loop can confirm it)."""
        self._jobs.put((self._flush, (graph,)))

    def wait(self, timeout: float = 60.0) -> None:
        """Block until every queued job is done (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        self._jobs.put(None)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job[0](*job[1])
            except Exception:                          # pragma: no cover - logged, the stream goes on
                LOG.exception("pose graph update failed")
            finally:
                self._jobs.task_done()

    def _run(self, graph: PoseGraph, values: Dict[int, np.ndarray], factors: List) -> None:
        t0, gtsam = time.perf_counter(), _require()
        new = gtsam.NonlinearFactorGraph()
        init = gtsam.Values()
        for k, pose in values.items():
            init.insert(k, to_gtsam(pose))
            self._order[k] = len(self._order)
        loops = [f for f in factors if isinstance(f, Between) and f.kind == "loop"]
        others = [f for f in factors if not (isinstance(f, Between) and f.kind == "loop")]
        for f in others:
            new.add(self._factor(f))
        self._windows += [f for f in others if isinstance(f, Between)]
        self._factors += others
        self.isam.update(new, init)
        with self._lock:                               # O(new keys): the windows' own poses
            for k in values:
                self.poses[k] = from_gtsam(self.isam.calculateEstimateSimilarity3(k))
        loops = self._consistent(graph, loops)
        if loops:
            self._insert_loops(graph, loops)
        with self._lock:
            self.version += 1
        self.update_s.append(time.perf_counter() - t0)

    def _insert_loops(self, graph: PoseGraph, loops: List[Between]) -> None:
        """Loops into iSAM2, relinearised, gated (``_verdict``; a batch solve first with ``batch_resolve``);
        rejected ones leave iSAM2 again and the published poses stay the pre-loop ones."""
        gtsam = _require()
        new = gtsam.NonlinearFactorGraph()
        for f in loops:
            new.add(self._factor(f))
        indices = list(self.isam.update(new, gtsam.Values()).getNewFactorsIndices())
        for _ in range(self.config_iterations):       # relinearise: a loop moves a lot
            self.isam.update()
        estimate = self.isam.calculateEstimate()
        bad = [(indices[i], f, why) for i, f in enumerate(loops) if (why := self._verdict(f, estimate))]
        batch = False
        if bad and self.config.batch_resolve:          # iSAM2 may have stopped short of the optimum: a batch solve
            solved = self._batch(loops, estimate)
            if solved is not None and not any(self._verdict(f, solved) for f in loops):
                estimate, bad, batch = solved, [], True
        good = [f for f in loops if not any(f is b[1] for b in bad)]
        self._factors += good
        self._accepted += good
        if batch:
            self._rebuild(estimate)
        if bad:
            self.isam.update(gtsam.NonlinearFactorGraph(), gtsam.Values(), [b[0] for b in bad])
            for _, f, why in bad:
                graph.reject(why)
                _remove(graph.betweens, f)
        with self._lock:
            if not bad:
                self.poses = {k: from_gtsam(estimate.atSimilarity3(k)) for k in estimate.keys()}
            graph.loops_accepted += len(good)

    # ------------------------------------------------------------------ loop consistency
    def _consistent(self, graph: PoseGraph, loops: List[Between]) -> List[Between]:
        """The loops that may enter the graph now: ``loops`` themselves when the test is off; else the
        pending (new included) loops that ``consistent_loops`` other loops agree with (``cycle_chi2``).
        Pending loops that fell ``consistency_window`` keyframes behind the newest are rejected."""
        cfg = self.config
        if cfg.consistent_loops == 0:
            return loops
        for f in loops:
            _remove(graph.betweens, f)
            graph.pending.append(f)
        partners = list(graph.pending) + self._accepted
        confirmed = [f for f in list(graph.pending) if self._agreeing(f, partners) >= cfg.consistent_loops]
        for f in confirmed:
            _remove(graph.pending, f)
            self._disagreed.pop(id(f), None)
            graph.betweens.append(f)
        newest = len(self._order) - 1
        for f in [f for f in graph.pending if newest - self._order.get(f.b, newest) > cfg.consistency_window]:
            self._drop_pending(graph, f, f"unconfirmed: {self._why_unconfirmed(f)} within "
                                         f"consistency_window={cfg.consistency_window} keyframes")
        return confirmed

    def _agreeing(self, loop: Between, partners: List[Between]) -> int:
        """How many other loops near ``loop`` in time agree with it (both ends close: at most
        ``consistency_window`` keyframes of chain on the cycle's two segments together; not the same
        new keyframe); remembers how many disagreed (the rejection reason)."""
        cfg, order, n_ok, n_bad = self.config, self._order, 0, 0
        if not all(k in order and k in self.poses for k in (loop.a, loop.b)):
            return 0
        for p in partners:
            if p is loop or p.b == loop.b or not all(k in order and k in self.poses for k in (p.a, p.b)):
                continue
            steps = abs(order[p.a] - order[loop.a]) + abs(order[p.b] - order[loop.b])
            if steps > cfg.consistency_window:         # too much chain between them: the test has no power
                continue
            if cycle_chi2(loop, p, self.poses, steps, cfg) <= cfg.consistency_chi2:
                n_ok += 1
            else:
                n_bad += 1
        self._disagreed[id(loop)] = max(self._disagreed.get(id(loop), 0), n_bad)
        return n_ok

    def _why_unconfirmed(self, loop: Between) -> str:
        n = self._disagreed.get(id(loop), 0)
        return f"inconsistent with the {n} loop(s) near it" if n else "no other loop near it"

    def _drop_pending(self, graph: PoseGraph, loop: Between, reason: str) -> None:
        _remove(graph.pending, loop)
        self._disagreed.pop(id(loop), None)
        graph.reject(reason)

    def _flush(self, graph: PoseGraph) -> None:
        for f in list(graph.pending):
            self._drop_pending(graph, f, f"unconfirmed at the end of the stream: {self._why_unconfirmed(f)}")

    def _batch(self, loops: List[Between], estimate):
        """Levenberg-Marquardt over the whole graph (every record in iSAM2 and ``loops``) from
        ``estimate``: iSAM2's few relinearisations stop short when a loop exposes a large drift (the
        chain starts far from the loop: Gauss-Newton steps of a robust kernel are small). Returns the
        solution, or None if it does not lower the graph's error. The same gates (``_verdict``) decide."""
        gtsam, t0 = _require(), time.perf_counter()
        full = gtsam.NonlinearFactorGraph()
        for f in self._factors + loops:
            full.add(self._factor(f))
        params = gtsam.LevenbergMarquardtParams()
        params.setMaxIterations(self.config_batch_iterations)
        solved = gtsam.LevenbergMarquardtOptimizer(full, estimate, params).optimize()
        self.batch_solves.append(time.perf_counter() - t0)
        if not full.error(solved) < full.error(estimate):
            return None
        return solved

    def _rebuild(self, estimate) -> None:
        """A fresh iSAM2 over every record in it, linearised at ``estimate`` (after an accepted batch solve)."""
        gtsam = _require()
        params = gtsam.ISAM2Params()
        params.setRelinearizeThreshold(0.01)
        self.isam = gtsam.ISAM2(params)
        full = gtsam.NonlinearFactorGraph()
        for f in self._factors:
            full.add(self._factor(f))
        self.isam.update(full, estimate)

    def _factor(self, f):
        gtsam = _require()
        if isinstance(f, Prior):
            return gtsam.PriorFactorSimilarity3(f.key, to_gtsam(f.pose), gtsam.noiseModel.Diagonal.Sigmas(f.sigmas))
        base = gtsam.noiseModel.Diagonal.Sigmas(f.sigmas)
        est = gtsam.noiseModel.mEstimator
        kernel = (est.Cauchy if self.config.kernel == "cauchy" else est.Huber).Create(self.config.kernel_k)
        robust = gtsam.noiseModel.Robust.Create(kernel, base)
        return gtsam.BetweenFactorSimilarity3(f.a, f.b, to_gtsam(f.relative), robust)

    config_iterations = 10
    config_batch_iterations = 100

    def _verdict(self, loop: Between, values) -> str:
        """'' when the optimised graph agrees with the loop, else the rejection reason."""
        cfg = self.config
        if self._chi2(loop, values) > cfg.max_loop_chi2:
            return f"loop residual after optimisation: chi2 > max_loop_chi2={cfg.max_loop_chi2:g}"
        worst = max((self._chi2(f, values) for f in self._windows), default=0.0)
        if worst > cfg.max_window_chi2:
            return f"bends a window constraint: chi2 > max_window_chi2={cfg.max_window_chi2:g}"
        return ""

    @staticmethod
    def _chi2(f: Between, values) -> float:
        gtsam = _require()
        plain = gtsam.BetweenFactorSimilarity3(f.a, f.b, to_gtsam(f.relative), gtsam.noiseModel.Unit.Create(7))
        err = np.asarray(plain.unwhitenedError(values)) / f.sigmas
        return float(err @ err)


def _remove(records: List, record) -> None:
    """Remove ``record`` itself (records hold arrays: ``list.remove``'s == is ambiguous)."""
    del records[next(i for i, r in enumerate(records) if r is record)]


__all__ = ["available", "make_backend", "GtsamBackend", "to_gtsam", "from_gtsam"]
