"""The node's ``compile_tokenwise`` parameter: auto compiles on CUDA only; on, the warm-up compiles
the window size's shape and the ready line says so; the predictions equal eager ones."""

import pytest
import torch
from torch._dynamo.utils import counters

from httm_ros.ros import params
from httm_ros.ros.model_runner import build_model_runner, compile_enabled
from httm_ros.vggt import layers
from httm_ros.vggt.golden import golden_images


def _values(**kw):
    return {**params.defaults(), "allow_test_weights": True, "model_config": "tiny", "device": "cpu",
            "image_size": 168, "window_size": 3, "window_overlap": 2, "merge_mode": "httm", **kw}


@pytest.fixture
def fast_backend(fresh_dynamo):
    layers.set_compile_backend("aot_eager")                  # dynamo's tracing without C++ code generation


def test_auto_means_cuda_and_the_choices_are_checked():
    assert params.defaults()["compile_tokenwise"] == "auto"
    assert compile_enabled({"compile_tokenwise": "auto"}, torch.device("cuda"))
    assert not compile_enabled({"compile_tokenwise": "auto"}, torch.device("cpu"))
    assert compile_enabled({"compile_tokenwise": "on"}, torch.device("cpu"))
    assert not compile_enabled({"compile_tokenwise": "off"}, torch.device("cuda"))
    assert params.validate(_values(compile_tokenwise="yes"))               # rejected
    assert build_model_runner(_values(warmup_forwards=0)).predictor.compile_frames is None


def test_on_compiles_the_window_shape_in_the_warm_up(fast_backend):
    eager = build_model_runner(_values(warmup_forwards=0, compile_tokenwise="off"))
    runner = build_model_runner(_values(warmup_forwards=1, compile_tokenwise="on"))
    assert runner.predictor.compile_frames == 3
    assert "token-wise passes and DPT heads compiled for 3-frame windows" in runner.description
    assert counters["stats"]["unique_graphs"] > 0                          # the warm-up compiled
    graphs = counters["stats"]["unique_graphs"]
    images = golden_images()                                                # [3, 3, 126, 168]
    got, ref = runner.predictor.predict(images, [0, 1, 2]), eager.predictor.predict(images, [0, 1, 2])
    assert got.stats["compiled"] and counters["stats"]["unique_graphs"] == graphs   # no compile in the stream
    assert torch.allclose(got.depth, ref.depth, atol=1e-5)
    assert torch.allclose(got.extrinsics, ref.extrinsics, atol=1e-5)
