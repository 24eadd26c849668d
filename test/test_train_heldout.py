"""httm-train's held-out metrics, end to end on the conventions: a perfect predictor (the training
targets fed back as the prediction) and the oracle score 0; identity / inverted / mirrored
predictions do not."""

import math

import numpy as np
import pytest
import torch

from httm_ros.geometry import invert_rigid
from httm_ros.synthetic.oracle import OraclePredictor
from httm_ros.synthetic.sequence import Sequence
from httm_ros.train.data import heldout_specs, normalise_ground_truth, render_clip
from httm_ros.train.heldout import evaluate_heldout, prediction_metrics
from httm_ros.vggt.pose_encoding import (extrinsics_intrinsics_to_pose_encoding,
                                         pose_encoding_to_extrinsics_intrinsics)

HW = (42, 56)


@pytest.fixture(scope="module")
def clips():
    """Two held-out clips (a forward walk and a walk) of 8 frames and their training targets."""
    out = []
    for spec in heldout_specs(2):
        clip = render_clip(spec, 8, HW, "cpu")
        gt = normalise_ground_truth(clip["depth"][None], clip["cam_to_world"][None], clip["intrinsics"][None], HW)
        out.append((clip, {k: v[0] for k, v in gt.items() if k != "scale"}))
    return out


def _metrics(pose_enc, depth, clip):
    row = prediction_metrics(pose_enc, depth, clip, HW)
    row.pop("rot_errors_deg")
    return row


def test_training_targets_as_prediction_score_zero(clips):
    for clip, gt in clips:
        row = _metrics(gt["pose_enc"], 3.7 * gt["depth"], clip)                 # any depth scale
        assert row["abs_rel"] < 1e-5 and row["delta_1_25"] == 1.0
        assert row["rot_err_median_deg"] < 1e-3 and row["ate_percent"] < 1e-3


def test_target_encoding_decodes_to_the_rendered_cameras(clips):
    """pose_enc -> (camera-from-first, K): K is the renderer's, frame 0 is the identity, and the
    decoded relative poses times the scale are the rendered ones."""
    for clip, gt in clips:
        extr, k = pose_encoding_to_extrinsics_intrinsics(gt["pose_enc"].double(), HW)
        np.testing.assert_allclose(k.numpy(), clip["intrinsics"].double().numpy(), rtol=1e-5)
        np.testing.assert_allclose(extr[0].numpy(), np.eye(3, 4), atol=1e-6)
        c2w = clip["cam_to_world"].double()
        want = torch.linalg.inv(c2w[:1]) @ c2w                                      # cam -> first
        got = invert_rigid(extr)
        np.testing.assert_allclose(got[:, :3, :3].numpy(), want[:, :3, :3].numpy(), atol=1e-5)
        scale = (want[1:, :3, 3].norm(dim=-1) / got[1:, :3, 3].norm(dim=-1)).numpy()
        np.testing.assert_allclose(scale, scale[0], rtol=1e-4)


def test_oracle_without_noise_scores_zero(clips):
    for clip, _ in clips:
        seq = Sequence(clip["images"].numpy(), clip["depth"].numpy(), clip["intrinsics"].numpy(),
                       clip["cam_to_world"].double().numpy(), np.arange(8) / 30.0)
        oracle = OraclePredictor(seq, noise=0.0, outlier_fraction=0.0, seed=4)
        images = clip["images"].permute(0, 3, 1, 2).float() / 255.0
        pred = oracle.predict(images, range(8))
        enc = extrinsics_intrinsics_to_pose_encoding(pred.extrinsics.double(), pred.intrinsics.double(), HW)
        row = _metrics(enc, pred.depth, clip)
        assert row["abs_rel"] < 1e-5 and row["rot_err_median_deg"] < 1e-3 and row["ate_percent"] < 1e-3


def test_wrong_conventions_do_not_score_zero(clips):
    """Identity rotations, world-from-camera fed as camera-from-world, a mirrored depth map: all
    visible in the metrics (the first run's rotation error equalled the identity predictor's)."""
    clip, gt = clips[1]
    enc = gt["pose_enc"]
    ident = enc.clone()
    ident[:, 3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    truth_rot = _metrics(ident, gt["depth"], clip)["rot_err_median_deg"]
    assert truth_rot > 2.0
    extr, k = pose_encoding_to_extrinsics_intrinsics(enc.double(), HW)
    inverted = extrinsics_intrinsics_to_pose_encoding(invert_rigid(extr), k, HW)
    assert _metrics(inverted, gt["depth"], clip)["rot_err_median_deg"] > 2.0     # ATE alone misses it
    assert _metrics(enc, gt["depth"].flip(-2), clip)["abs_rel"] > 0.05


def test_evaluate_heldout_of_a_perfect_model_meets_every_target(clips, monkeypatch):
    """evaluate_heldout with a model returning the ground truth of the clip it is given."""
    truth = {}

    class Perfect(torch.nn.Module):
        def forward(self, images, heads=()):
            clip, gt = truth[images.shape[0]]
            return {"pose_enc": gt["pose_enc"][None], "depth": gt["depth"][None, ..., None]}

    import httm_ros.train.heldout as heldout

    real_render = heldout.render_clip

    def render(spec, frames, image_hw, device):
        clip = real_render(spec, frames, image_hw, device)
        gt = normalise_ground_truth(clip["depth"][None], clip["cam_to_world"][None], clip["intrinsics"][None],
                                    image_hw)
        truth[frames] = (clip, {k: v[0] for k, v in gt.items() if k != "scale"})
        return clip

    monkeypatch.setattr(heldout, "render_clip", render)
    result = evaluate_heldout(Perfect(), HW, "cpu", n=2, frames=6)
    assert all(result["met"].values()), result["summary"]
    assert math.isclose(result["summary"]["abs_rel"], 0.0, abs_tol=1e-5)
