"""The blocks' token-wise passes through torch.compile (``httm_ros.vggt.layers.compile_tokenwise``):
the same outputs as eager, one compile per input shape shared by every block, eager for training.

CPU: the "aot_eager" backend checks dynamo's tracing of our passes quickly; one test runs the real
inductor backend (C++ code generation, ~30 s on 2 cores). The CUDA test (marker ``gpu``) checks the
compiled VGGT-1B against the public implementation's golden outputs, fp32 and bf16 autocast.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from httm_ros.httm import HTTMConfig, patch
from httm_ros.vggt import VGGT, VGGTConfig, layers
from httm_ros.vggt.golden import golden_images, golden_vggt1b

DATA = Path(__file__).parent / "data"
KEYS = ("pose_enc", "depth", "depth_conf", "world_points")


@pytest.fixture(autouse=True)
def _fresh(fresh_dynamo):
    """conftest's ``fresh_dynamo`` around every test of this module."""


def _tiny(seed: int = 0) -> VGGT:
    torch.manual_seed(seed)
    return VGGT(VGGTConfig.preset("tiny")).eval()


def _images(frames: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, frames, 3, 56, 70, generator=g)                      # tiny: 4 x 5 patches


def _run(model, images):
    with torch.inference_mode():
        return model(images)


def _assert_close(got, ref, atol=1e-5):
    for key in KEYS:
        diff = (got[key] - ref[key]).abs().max().item()
        assert diff <= atol, f"{key}: max |compiled - eager| = {diff:.3e}"


def test_compiled_matches_eager_with_one_compile_per_shape():
    model, images = _tiny(), _images()
    ref = _run(model, images)
    layers.set_compile_backend("aot_eager")
    switched = layers.compile_tokenwise(model)
    assert switched == len([m for m in model.modules() if isinstance(m, layers.Block)]) > 8
    _assert_close(_run(model, images), ref)
    graphs = counters["stats"]["unique_graphs"]
    # four input shapes (DINO, frame and global blocks, camera trunk) x three passes, however
    # many blocks share them
    assert 0 < graphs <= 12, graphs
    _run(model, images)
    assert counters["stats"]["unique_graphs"] == graphs                        # no recompiles


def test_compiled_chunked_path_and_merging(monkeypatch):
    """Long inputs take the chunked path (token chunks through the same compiled passes), and
    HTTM's merging core stays eager between them."""
    model, images = _tiny(), _images(frames=4)
    patch(model, HTTMConfig(impl="torch"))
    monkeypatch.setattr(layers, "CHUNK_ROWS", 50)                            # global blocks: 4 x 26 tokens
    ref = _run(model, images)
    layers.set_compile_backend("aot_eager")
    layers.compile_tokenwise(model)
    _assert_close(_run(model, images), ref)
    assert counters["stats"]["unique_graphs"] > 0


def test_training_stays_eager():
    model, images = _tiny(), _images()
    layers.set_compile_backend("aot_eager")
    layers.compile_tokenwise(model)
    model.train()
    out = model(images)
    out["depth"].mean().backward()
    assert counters["stats"]["unique_graphs"] == 0
    assert model.aggregator.global_blocks[0].attn.qkv.weight.grad is not None


def test_eager_context_skips_the_compile():
    model, images = _tiny(), _images()
    layers.set_compile_backend("aot_eager")
    layers.compile_tokenwise(model)
    with layers.eager_tokenwise():
        _run(model, images)
    assert counters["stats"]["unique_graphs"] == 0


def test_switch_off_restores_eager():
    model, images = _tiny(), _images()
    layers.set_compile_backend("aot_eager")
    layers.compile_tokenwise(model)
    assert layers.compile_tokenwise(model, enabled=False) > 0
    _run(model, images)
    assert counters["stats"]["unique_graphs"] == 0


@pytest.mark.slow
def test_inductor_on_cpu():
    """The default backend: inductor's generated C++ kernels, outputs as eager, the token-wise
    passes and the DPT heads compiled (as the node compiles them)."""
    from httm_ros.vggt.heads import compile_dense_heads

    model, images = _tiny(), _images()
    ref = _run(model, images)
    layers.compile_tokenwise(model)
    compile_dense_heads(model)
    _assert_close(_run(model, images), ref, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_golden_cuda_compiled(monkeypatch):
    """Compiled VGGT-1B (inductor, Triton kernels) against the public code's outputs: fp32 (TF32
    off) within the CPU tolerance, bf16 autocast within the eager bf16 bound of test_vggt_golden."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    reference = dict(np.load(DATA / "golden_vggt1b.npz"))
    model = golden_vggt1b(DATA / "state_dict_manifest.json").cuda()
    layers.compile_tokenwise(model)
    images = golden_images().cuda()
    for autocast, tol in ((None, 1e-4), ("bfloat16", 2e-2)):
        model.config = model.config.replace(cuda_autocast_dtype=autocast)
        got = _run(model, images)
        for key in KEYS:
            g, r = got[key][0].float().cpu().numpy(), reference[key]
            rel = np.linalg.norm(g - r) / np.linalg.norm(r)
            print(f"compiled golden {autocast or 'float32'} {key}: relative error {rel:.3e}")
            assert rel < tol, (autocast, key, rel)


def test_predictor_compiles_only_its_window_size():
    """ModelPredictor(compile_frames=K): K-frame windows compiled, a shorter (last) window eager
    (no compile in the middle of a stream); predictions as eager."""
    from httm_ros.pipeline import ModelPredictor

    images = _images(frames=4)[0]
    eager = ModelPredictor(_tiny(), compile_frames=None)
    ref_full, ref_short = eager.predict(images, range(4)), eager.predict(images[:3], range(3))
    layers.set_compile_backend("aot_eager")
    pred = ModelPredictor(_tiny(), compile_frames=4)
    full = pred.predict(images, range(4))
    graphs = counters["stats"]["unique_graphs"]
    assert full.stats["compiled"] and graphs > 0
    short = pred.predict(images[:3], range(3))
    assert not short.stats["compiled"] and counters["stats"]["unique_graphs"] == graphs
    for got, ref in ((full, ref_full), (short, ref_short)):
        assert torch.allclose(got.depth, ref.depth, atol=1e-5) and torch.allclose(got.extrinsics, ref.extrinsics, atol=1e-5)
    with pytest.raises(ValueError, match="compile_frames"):
        ModelPredictor(_tiny(), compile_frames=0)


def test_a_failing_compile_falls_back_to_eager(caplog):
    """A backend that cannot compile (here: one that raises) costs one warning, not the forward."""
    def broken(gm, example_inputs):
        raise RuntimeError("no C compiler")

    model, images = _tiny(), _images()
    ref = _run(model, images)
    layers.set_compile_backend(broken)
    layers.compile_tokenwise(model)
    with caplog.at_level("WARNING", logger="httm_ros.vggt"):
        got = _run(model, images)
        _run(model, images)
    _assert_close(got, ref)
    assert "no C compiler" in (layers.compile_failure() or "")
    assert sum("torch.compile failed" in r.message for r in caplog.records) == 1


def test_bfloat16_weights_compiled_as_eager():
    """The onboard preset's bf16 weights through the compiled passes: the same outputs as eager bf16."""
    model, images = _tiny().to(torch.bfloat16), _images().to(torch.bfloat16)
    ref = _run(model, images)
    layers.set_compile_backend("aot_eager")
    layers.compile_tokenwise(model)
    _assert_close(_run(model, images), ref, atol=0.0)


def test_compiled_dense_heads_match_eager_with_one_compile_per_chunk_shape():
    """The DPT heads' chunks through torch.compile: the same outputs as eager; chunks of one shape
    share one graph (5 frames in chunks of 2: shapes 2 and 1), both heads included; training and
    ``eager_tokenwise`` stay eager; switching off restores eager."""
    from httm_ros.vggt.heads import DPTHead, compile_dense_heads

    model, images = _tiny(), _images(frames=5)
    model.config = model.config.replace(dpt_chunk_size=2)
    ref = _run(model, images)
    layers.set_compile_backend("aot_eager")
    assert compile_dense_heads(model) == len([m for m in model.modules() if isinstance(m, DPTHead)]) == 2
    with layers.eager_tokenwise():
        _run(model, images)
    assert counters["stats"]["unique_graphs"] == 0
    _assert_close(_run(model, images), ref)
    graphs = counters["stats"]["unique_graphs"]
    assert 2 <= graphs <= 4, graphs                   # chunk shapes 2 and 1 (each head's own weights)
    _run(model, images)
    assert counters["stats"]["unique_graphs"] == graphs
    model.train()
    model(images)["depth"].mean().backward()
    assert counters["stats"]["unique_graphs"] == graphs
    assert compile_dense_heads(model.eval(), enabled=False) == 2
    _assert_close(_run(model, images), ref, atol=0.0)


def test_predictor_compiles_the_heads_with_the_passes():
    """ModelPredictor(compile_frames=K) switches the DPT heads too (the node's ``compile_tokenwise``)."""
    from httm_ros.pipeline import ModelPredictor

    layers.set_compile_backend("aot_eager")
    on, off = ModelPredictor(_tiny(), compile_frames=3), ModelPredictor(_tiny(), compile_frames=None)
    assert on.model.depth_head.compiled and on.model.point_head.compiled
    assert not off.model.depth_head.compiled
