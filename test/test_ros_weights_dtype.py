"""``weights_dtype`` (issue 17): the model's weights cast at load; bfloat16 weights give the same
outputs as float32 within the tolerance stated in docs/ROS.md ("Weights dtype"), measured here on
the tiny model and the golden images (CPU); float16 needs CUDA."""

import numpy as np
import pytest
import torch

from httm_ros.ros import params
from httm_ros.ros.model_runner import build_model_runner
from httm_ros.vggt.golden import golden_images

TOLERANCE = 2e-2      # relative L2 error of bf16 weights vs fp32 (docs/ROS.md; measured ~0.7 %)


def _values(**kw):
    return {**params.defaults(), "allow_test_weights": True, "model_config": "tiny", "device": "cpu",
            "image_size": 168, "window_size": 3, "window_overlap": 2, "merge_mode": "none", **kw}


def _weight_bytes(runner) -> int:
    return sum(p.numel() * p.element_size() for p in runner.predictor.model.parameters())


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref))


def test_bfloat16_weights_half_the_memory_same_outputs_within_tolerance():
    fp32 = build_model_runner(_values(warmup_forwards=0))
    bf16 = build_model_runner(_values(weights_dtype="bfloat16", warmup_forwards=1))
    assert bf16.warmup is not None and "error" not in bf16.warmup          # the warm-up runs in bf16 too
    assert {p.dtype for p in bf16.predictor.model.parameters()} == {torch.bfloat16}
    assert _weight_bytes(bf16) * 2 == _weight_bytes(fp32)
    assert ", weights bfloat16" in bf16.description
    images = golden_images()                                                # [3, 3, 126, 168]
    ref, got = (r.predictor.predict(images, [0, 1, 2]) for r in (fp32, bf16))
    assert got.depth.dtype == torch.float32                                 # outputs stay float32
    errors = {name: _rel(getattr(got, name), getattr(ref, name))
              for name in ("extrinsics", "intrinsics", "depth", "depth_conf")}
    assert all(np.isfinite(e) and e < TOLERANCE for e in errors.values()), errors


def test_float16_weights_need_cuda_and_the_choices_are_checked():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="weights_dtype float16 needs CUDA"):
            build_model_runner(_values(weights_dtype="float16", warmup_forwards=0))
    assert params.defaults()["weights_dtype"] == "float32"
    assert params.validate(_values(weights_dtype="float64"))                # rejected
    assert not params.validate(_values(weights_dtype="bfloat16"))
