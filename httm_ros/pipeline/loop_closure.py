"""Loop closure for the streaming core: window and loop constraints in, corrected keyframes and map out.

:class:`LoopCloser` is driven by :class:`~.stream.StreamingReconstructor` (``StreamConfig.loop_closure``):

* ``on_window``: every accepted anchored window adds its new keyframes to the :class:`~.pose_graph.PoseGraph`
  with one Sim(3) between-factor anchor -> new keyframe (the world-defining window: a chain), sigmas
  grown with the window's alignment residual; then, while TRACKING and past the cooldown, the
  newest keyframe's descriptor retrieves an old keyframe (>= ``min_gap`` keyframes back, cosine
  >= ``min_similarity``); a verification window [old keyframe, newest keyframe] is run through the
  predictor, its scale fixed on the old keyframe's stored depth (anchored alignment), and the old
  keyframe's map points must agree with the newest keyframe's predicted depth at the loop pose.
  A verified hit becomes a "loop" between-factor; a failed one is counted with its reason. A loop
  enters the graph once another verified loop close in time agrees with it (the backend's
  consistency test; pending until then, ``summary()["loops_pending"]``).
* the GTSAM backend (:mod:`.gtsam_backend`) optimises on its own thread; ``apply`` (called at the
  start of the next window, on the inference thread) copies a newer estimate into the keyframe
  store (pose, depth scale, sample points), the trajectory, and rebuilds the map from the stored
  keyframes (bounded: at most ``StoreConfig.max_keyframes`` keyframes x (h/stride) x (w/stride) points).

Only segment 0 is in the graph (later segments keep their window poses).
"""

from __future__ import annotations

import logging
import math
import time
from typing import List

import numpy as np
import torch

from ..geometry import invert_rigid, unproject_depth
from .alignment import FrameGeometry
from .anchoring import anchored_alignment, depth_agreement
from .gtsam_backend import make_backend
from .tracking import TrackingState
from .pose_graph import LoopClosureConfig, PoseGraph, drift_correction, sim3, sim3_inverse, sim3_scale, window_sigmas

LOG = logging.getLogger(__name__)


class LoopCloser:
    def __init__(self, config: LoopClosureConfig, anchored: bool = True) -> None:
        self.config = config
        self.graph = PoseGraph()
        self.backend = None
        if not anchored:
            LOG.warning("loop closure needs WindowConfig.mode='anchored' (the keyframe store): running without it")
        else:
            self.backend = make_backend(config)
        self.applied_version = 0
        self.loop_attempts = 0
        self.map_rebuild_s: List[float] = []
        self._last_attempt = -10 ** 9

    @property
    def corrections(self) -> int:
        """Corrections applied so far (store, trajectory, map): republish ~/path and the map when it grows."""
        return len(self.map_rebuild_s)

    @property
    def active(self) -> bool:
        return self.backend is not None

    # ------------------------------------------------------------------ window constraints
    def on_window(self, rec, result) -> None:
        """An accepted window of segment 0: its constraints, then maybe one loop attempt."""
        if not self.active or result.segment != 0 or not result.accepted:
            return
        g, n_ov = self.graph, result.num_overlap
        poses = result.cam_to_world.detach().cpu().numpy()                    # [K,4,4] world
        res = float(result.alignment.residual_rel)
        new_keys, factors = [], []
        previous = max(g.initial) if g.initial else None          # the last keyframe before this window
        reloc = result.relocalisation and n_ov > 0
        for k in range(n_ov, result.num_keyframes):
            fid = result.frame_ids[k]
            if g.add_keyframe(fid, poses[k], result.stamps[k]):
                new_keys.append(fid)
            for ref in self._references(result, k):
                if reloc and ref == 0 and k > n_ov:
                    continue                                   # one loop per relocalisation: the first new keyframe's
                rel = sim3_inverse(poses[ref]) @ poses[k]          # the window's own measurement, world units
                steps = k - ref if ref else k - n_ov + 1
                kind = "loop" if reloc and ref == 0 else "window"
                factors.append(g.add_between(result.frame_ids[ref], fid, rel,
                                             window_sigmas(self.config, res, kind, 1 if kind == "loop" else steps), kind))
        if reloc and previous is not None:
            factors += self._bridge(rec, previous, result.frame_ids[n_ov])
        if len(g.priors) == 1 and len(g.initial) == len(new_keys):
            factors.insert(0, g.priors[0])
        loop = self._try_loop(rec, result)
        if loop is not None:
            factors.append(loop)
        self._submit(new_keys, factors)

    def _submit(self, new_keys: List[int], factors: list) -> None:
        """To the solver's thread; with ``synchronous`` the update is done when this returns."""
        self.backend.submit(self.graph, new_keys, factors)
        if self.config.synchronous:
            self.backend.wait()

    def _bridge(self, rec, previous: int, first_new: int) -> list:
        """Relocalised after LOST: the last tracked keyframe -> the first new one, measured by a window
        [previous, first_new] (without it the graph cannot see the drift the relocalisation exposed)."""
        if previous not in rec.store or first_new not in rec.store:
            return []
        rel, reason = self._verify(rec, rec.store[previous], rec.store[first_new],
                                   rec.config.tracking.min_depth_agreement)     # a window's check: close in time
        if rel is None:
            self.graph.reject(f"bridge {reason}")
            return []
        return [self.graph.add_between(previous, first_new, rel, window_sigmas(self.config, 0.0, "window", 2))]

    @staticmethod
    def _references(result, k: int) -> List[int]:
        """Window positions a new keyframe k is constrained to: the anchor (0) and the previous keyframe
        in time (the latest known keyframe for the first new one): the chain observes drift."""
        n_ov = result.num_overlap
        if n_ov == 0:
            return [k - 1] if k else []
        prev = k - 1 if k > n_ov else max(range(n_ov), key=lambda i: result.frame_ids[i])
        return sorted({0, prev})

    def add_loop(self, old: int, new: int, relative: np.ndarray) -> None:
        """Inject a loop constraint T_old^-1 T_new (tests: a false match that passed verification)."""
        f = self.graph.add_between(old, new, relative, window_sigmas(self.config, 0.0, "loop"), "loop")
        self._submit([], [f])

    # ------------------------------------------------------------------ loops
    def _try_loop(self, rec, result):
        order = self.graph.keys()
        newest = result.frame_ids[-1]
        if len(order) - self._last_attempt < self.config.cooldown or len(order) <= self.config.min_gap:
            return None
        if rec.tracking_state != TrackingState.TRACKING:
            return None
        recent = set(order[-self.config.min_gap:])
        query = rec.store[newest] if newest in rec.store else None
        if query is None:
            return None
        cands = rec.store.retrieve(query.descriptor, 0, 1, exclude=recent)
        if not cands or float(cands[0].descriptor @ query.descriptor) < self.config.min_similarity:
            return None
        self._last_attempt = len(order)
        self.loop_attempts += 1
        rel, reason = self._verify(rec, cands[0], query, self.config.verify_min_agreement)
        if rel is None:
            self.graph.reject(reason)
            return None
        return self.graph.add_between(cands[0].frame_id, newest, rel, window_sigmas(self.config, 0.0, "loop"), "loop")

    def _verify(self, rec, old, query, min_agreement: float):
        """(relative Sim(3) old -> query, "") or (None, reason) from a window [old, query]: at least
        ``verify_min_visible`` of the old keyframe's stored points in the new view, ``min_agreement``
        of them agreeing with its depth (a loop: ``verify_min_agreement``; a relocalisation bridge,
        two keyframes close in time: the windows' ``min_depth_agreement``)."""
        dev = rec.device
        images = torch.stack([old.image, query.image]).to(dev).float().div_(255.0)          # [2,3,H,W]
        pred = rec.predictor.predict(images, [old.frame_id, query.frame_id])
        cam = invert_rigid(pred.extrinsics.double().cpu())                                   # [2,4,4] window
        depth, conf = pred.depth.float().cpu(), pred.depth_conf.float().cpu()
        local = FrameGeometry(cam[:1], pred.intrinsics[:1].float().cpu(), depth[:1], conf[:1])
        known = FrameGeometry(old.cam_to_world[None], old.intrinsics[None], old.depth[None], old.conf[None].float())
        rep = anchored_alignment(local, known, rec.config.align, rec.config.tracking)
        if not rep.accepted:
            return None, f"verification: {rep.reason.split(':')[0]}"
        rel_local = (torch.linalg.inv(cam[0]) @ cam[1]).numpy()
        rel = sim3(rel_local[:3, :3], rep.scale * rel_local[:3, 3])
        pose = old.cam_to_world.numpy() @ rel
        n, agree = depth_agreement(old.points, torch.from_numpy(pose), pred.intrinsics[1].cpu(),
                                   depth[1] * rep.scale, rec.config.tracking.anchor_scale_inlier)
        if n < max(4, math.ceil(self.config.verify_min_visible * old.points.shape[0])):
            return None, "verification: too few of the old keyframe's points in the new view"
        if not agree >= min_agreement:
            return None, "verification: old keyframe's points disagree with the new keyframe's depth"
        return rel, ""

    # ------------------------------------------------------------------ corrections
    def apply(self, rec) -> bool:
        """Copy a newer optimised estimate into store, trajectory and map (inference thread). True if applied."""
        if not self.active or self.graph.loops_accepted == self.applied_version:
            return False                               # without a new loop the estimate is the windows' own
        with self.backend._lock:
            poses, version = dict(self.backend.poses), self.graph.loops_accepted
        self.applied_version = version
        if not poses:
            return False
        t0 = time.perf_counter()
        for fid, new in poses.items():
            self.graph.current[fid] = new
        self._update_store(rec, poses)
        self._update_trajectory(rec.segments[0].trajectory, poses)
        self._rebuild_map(rec)
        self.map_rebuild_s.append(time.perf_counter() - t0)
        return True

    @staticmethod
    def _update_store(rec, poses) -> None:
        for kf in rec.store.keyframes(0):
            if kf.frame_id not in poses:
                continue
            new = poses[kf.frame_id]
            s = sim3_scale(new)
            corr = torch.from_numpy(drift_correction(kf.cam_to_world.numpy(), new))              # [4,4]
            kf.points = (kf.points.double() @ corr[:3, :3].T + corr[:3, 3]).float()
            kf.cam_to_world = torch.from_numpy(sim3(new[:3, :3] / s, new[:3, 3]))
            kf.depth = kf.depth * s

    @staticmethod
    def _update_trajectory(traj, poses) -> None:
        for i, fid in enumerate(traj.frame_ids):
            if fid in poses:
                p = poses[fid]
                traj._poses[i] = sim3(p[:3, :3] / sim3_scale(p), p[:3, 3])

    @staticmethod
    def _rebuild_map(rec) -> None:
        """A fresh map of segment 0 from the stored keyframes (poses already corrected)."""
        seg = rec.segments[0]
        voxel = seg.map.voxel_size
        fresh = type(seg.map)(rec.config.map, device=rec.device)
        if voxel is not None:
            fresh.set_voxel_size(voxel)
        s, dev = rec.config.filter.pixel_stride, rec.device
        kfs = rec.store.keyframes(0)
        if not kfs:
            return
        d = torch.stack([k.depth for k in kfs]).to(dev)                                   # [N,h,w]
        c = torch.stack([k.conf for k in kfs]).to(dev, torch.float32)
        pts = unproject_depth(d, torch.stack([k.cam_to_world for k in kfs]).to(dev),
                              torch.stack([k.intrinsics for k in kfs]).to(dev), s)          # [N,h/s,w/s,3]
        ds, cs = d[:, ::s, ::s], c[:, ::s, ::s]
        keep = torch.isfinite(ds) & (ds > 0) & (cs >= rec.config.filter.conf_threshold)
        rgb = torch.stack([k.image for k in kfs]).to(dev)[:, :, ::s, ::s].permute(0, 2, 3, 1)[keep]
        fresh.insert(pts[keep].float(), rgb, stamp=0)
        seg.map = fresh

    def summary(self) -> dict:
        from .pose_graph import loop_summary
        out = loop_summary(self.graph)
        upd = self.backend.update_s if self.active else []
        out.update(loop_attempts=self.loop_attempts, updates=len(upd),
                   update_s_mean=float(np.mean(upd)) if upd else math.nan,
                   update_s_max=float(np.max(upd)) if upd else math.nan,
                   map_rebuild_s_mean=float(np.mean(self.map_rebuild_s)) if self.map_rebuild_s else math.nan)
        return out

    def flush(self) -> None:
        """The end of the stream: loops still waiting for a consistent one are rejected (queued; ``wait``)."""
        if self.active:
            self.backend.flush(self.graph)

    def close(self) -> None:
        if self.active:
            self.backend.close()

    def wait(self) -> None:
        if self.active:
            self.backend.wait()

    def save(self, folder, world=None) -> List[str]:
        """keyframes_before.tum, keyframes_after.tum, pose_graph.g2o in ``folder``; ``world`` [4,4]: a
        rigid change of world frame for the poses (the ROS side passes REP-103's)."""
        from pathlib import Path
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        return [str(self.graph.save_tum(out / "keyframes_before.tum", "initial", world)),
                str(self.graph.save_tum(out / "keyframes_after.tum", "current", world)),
                str(self.graph.save_g2o(out / "pose_graph.g2o", world=world))]

