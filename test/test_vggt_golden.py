"""VGGT-1B with deterministic golden weights must reproduce the public implementation's outputs.

Weights and images are rebuilt from the rules in shared/vggt/GOLDEN.md; the reference arrays
live in test/data/golden_vggt1b.npz. fp32 on CPU, ~35 s and ~5 GB RAM on 2 cores.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from httm_ros.vggt import VGGT
from httm_ros.vggt.golden import golden_images, golden_state_dict

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4  # relative L2 error; the same maths reaches ~1e-6


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(DATA / "golden_vggt1b.npz"))


@pytest.fixture(scope="module")
def outputs():
    with torch.device("meta"):
        model = VGGT()
    model.load_state_dict(golden_state_dict(DATA / "state_dict_manifest.json"), assign=True, strict=True)
    model.eval()
    with torch.inference_mode():
        out = model(golden_images(), return_aggregator_layers=(4, 23))
    del model
    arrays = {f"aggregator_layer{i}": t[0] for i, t in out.pop("aggregator_layers").items()}
    arrays.update({k: v[0] for k, v in out.items()})
    return {k: v.float().numpy() for k, v in arrays.items()}


def test_golden_images_match(reference):
    np.testing.assert_array_equal(golden_images().numpy(), reference["images"])


@pytest.mark.parametrize("key", [
    "aggregator_layer4", "aggregator_layer23", "pose_enc", "depth", "depth_conf",
    "world_points", "world_points_conf",
])
def test_golden_output(outputs, reference, key):
    got, ref = outputs[key], reference[key]
    assert got.shape == ref.shape
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel < TOLERANCE, f"{key}: relative error {rel:.3e}"
