"""The one adapter between :mod:`.pose_graph` records and GTSAM (iSAM2 over Similarity3, on its own thread).

    backend = make_backend(config)            # None (and one log line) when gtsam is not installed
    backend.submit(graph, new_keys, new_factors)   # returns at once; the worker thread optimises
    backend.wait(); poses = backend.poses     # key -> [4,4] Sim(3), the latest accepted estimate

Each job adds the new variables (initial value: the graph's ``initial``), the new factors (a
``PriorFactorSimilarity3`` for the first keyframe, ``BetweenFactorSimilarity3`` with a diagonal noise
in GTSAM's tangent order [rot, trans, log-scale] wrapped in a robust kernel, Cauchy or Huber) and
runs one iSAM2 update. A job holding a loop constraint is checked after its update: when the
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

from .pose_graph import Between, LoopClosureConfig, PoseGraph, Prior, sim3, sim3_scale

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
        self.batch_solves: List[float] = []            # seconds of each batch re-solve (see _batch)
        self._jobs: "queue.Queue" = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="pose_graph", daemon=True)
        self._thread.start()

    def submit(self, graph: PoseGraph, new_keys: Sequence[int], factors: Sequence) -> None:
        """Queue new variables and factors (Prior / Between records); never blocks on the solver."""
        values = {k: graph.initial[k].copy() for k in new_keys}
        self._jobs.put((graph, values, list(factors)))

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
                self._run(*job)
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
        loops = []
        for f in factors:
            new.add(self._factor(f))
            if isinstance(f, Between) and f.kind == "loop":
                loops.append((new.size() - 1, f))
            elif isinstance(f, Between):
                self._windows.append(f)
        self._factors += [f for f in factors if not (isinstance(f, Between) and f.kind == "loop")]
        result = self.isam.update(new, init)
        if not loops:                                  # O(new keys): the windows' own poses, nothing to correct
            with self._lock:
                for k in values:
                    self.poses[k] = from_gtsam(self.isam.calculateEstimateSimilarity3(k))
                self.version += 1
            self.update_s.append(time.perf_counter() - t0)
            return
        for _ in range(self.config_iterations):       # relinearise: a loop moves a lot
            self.isam.update()
        estimate = self.isam.calculateEstimate()
        indices = list(result.getNewFactorsIndices())
        bad = [(indices[i], f, why) for i, f in loops if (why := self._verdict(f, estimate))]
        batch = False
        if bad and self.config.batch_resolve:          # iSAM2 may have stopped short of the optimum: a batch solve
            solved = self._batch([f for _, f in loops], estimate)
            if solved is not None and not any(self._verdict(f, solved) for _, f in loops):
                estimate, bad, batch = solved, [], True
        self._factors += [f for _, f in loops if not any(f is b[1] for b in bad)]
        if batch:
            self._rebuild(estimate)
        if bad:
            self.isam.update(gtsam.NonlinearFactorGraph(), gtsam.Values(), [b[0] for b in bad])
            for _, f, why in bad:
                graph.reject(why)
                graph.betweens.remove(f)
        with self._lock:
            if bad:                                    # keep the pre-loop poses; only add the new keys
                for k in values:
                    self.poses[k] = from_gtsam(self.isam.calculateEstimateSimilarity3(k))
            else:
                self.poses = {k: from_gtsam(estimate.atSimilarity3(k)) for k in estimate.keys()}
            graph.loops_accepted += len(loops) - len(bad)
            self.version += 1
        self.update_s.append(time.perf_counter() - t0)

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


__all__ = ["available", "make_backend", "GtsamBackend", "to_gtsam", "from_gtsam"]
