"""The DPT heads in low precision (``VGGTConfig.dpt_cuda_dtype``, issue 14's lever): channels-last
layout changes no number, bf16 autocast stays close to fp32 and returns fp32, the CPU path and the
default are VGGT's fp32. The CUDA test (marker ``gpu``) checks VGGT-1B with bf16 heads against the
public implementation's golden outputs; its timing is ``httm-bench e2e --dpt-dtype bfloat16``.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from httm_ros.ros import params
from httm_ros.ros.model_runner import build_model_runner
from httm_ros.vggt import VGGT, VGGTConfig
from httm_ros.vggt.golden import golden_images, golden_vggt1b

DATA = Path(__file__).parent / "data"


def _tiny_layers(frames: int = 3):
    """(tiny VGGT, its aggregator's DPT layers {i: [1, S, P, 2C]}, image (H, W))."""
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.preset("tiny")).eval()
    images = torch.rand(1, frames, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        layers = model.aggregator(images, keep_layers=sorted(model.config.dpt_layers))
    return model, layers, (56, 70)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_channels_last_layout_changes_no_number():
    model, layers, hw = _tiny_layers()
    head, ps = model.depth_head, model.aggregator.patch_start
    with torch.inference_mode():
        ref = head(layers, ps, hw)
        got = head._run(layers, ps, hw, 0, 3, low_precision=True)          # channels-last, no autocast
    for g, r in zip(got, ref):
        assert torch.allclose(g, r, atol=1e-5, rtol=1e-5)


def test_bf16_heads_stay_close_to_fp32_and_return_fp32():
    model, layers, hw = _tiny_layers()
    ps = model.aggregator.patch_start
    with torch.inference_mode():
        for head in (model.depth_head, model.point_head):
            ref = head(layers, ps, hw, chunk_size=2)
            got = head(layers, ps, hw, chunk_size=2, low_precision=torch.bfloat16)
            for g, r in zip(got, ref):
                assert g.dtype == torch.float32 and g.shape == r.shape and torch.isfinite(g).all()
                assert 0 < _rel(g, r) < 2e-2, _rel(g, r)           # bf16 did run, and stays close


def test_dpt_dtype_is_cuda_only_and_checked():
    model, _, _ = _tiny_layers()
    images = torch.rand(1, 2, 3, 56, 70)
    with torch.inference_mode():
        ref = model(images, heads=("depth",))
        model.config = model.config.replace(dpt_cuda_dtype="bfloat16")
        got = model(images, heads=("depth",))
    assert torch.equal(got["depth"], ref["depth"])                  # CPU: fp32 heads, as VGGT
    assert VGGTConfig().dpt_cuda_dtype is None
    with pytest.raises(ValueError, match="dpt_cuda_dtype must be one of"):
        VGGTConfig.preset("tiny", dpt_cuda_dtype="int8")


def test_node_parameter_sets_the_heads_dtype():
    """The node's ``dpt_dtype`` (default bfloat16) reaches the model's config; on the CPU it changes
    nothing and the ready line does not mention it; ``float32`` is VGGT's fp32 heads."""
    values = {**params.defaults(), "allow_test_weights": True, "model_config": "tiny", "device": "cpu",
              "image_size": 168, "window_size": 3, "window_overlap": 2, "merge_mode": "none",
              "warmup_forwards": 0}
    assert values["dpt_dtype"] == "bfloat16"
    default = build_model_runner(values)
    fp32 = build_model_runner({**values, "dpt_dtype": "float32"})
    assert default.predictor.model.config.dpt_cuda_dtype == "bfloat16"
    assert fp32.predictor.model.config.dpt_cuda_dtype is None
    assert "DPT heads" not in default.description                  # CPU: the heads run in fp32
    images = golden_images()                                        # [3, 3, 126, 168]
    got, ref = (r.predictor.predict(images, [0, 1, 2]) for r in (default, fp32))
    assert torch.equal(got.depth, ref.depth)
    assert params.validate({**values, "dpt_dtype": "int8"})         # rejected
    assert not params.validate({**values, "dpt_dtype": "float16"})


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_golden_cuda_bf16_heads(monkeypatch):
    """VGGT-1B, aggregator in fp32 or bf16 autocast, DPT heads in bf16 channels-last, eager and
    then compiled (``compile_dense_heads``, inductor; the node's GPU setting): within the eager bf16
    bound of test_vggt_golden against the public code's outputs."""
    from httm_ros.vggt import layers
    from httm_ros.vggt.heads import compile_dense_heads

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    reference = dict(np.load(DATA / "golden_vggt1b.npz"))
    model = golden_vggt1b(DATA / "state_dict_manifest.json").cuda()
    images = golden_images().cuda()
    layers.set_compile_backend("inductor")
    for autocast, compiled in ((None, False), ("bfloat16", False), (None, True), ("bfloat16", True)):
        model.config = model.config.replace(cuda_autocast_dtype=autocast, dpt_cuda_dtype="bfloat16")
        compile_dense_heads(model, enabled=compiled)
        with torch.inference_mode():
            got = model(images)
        assert layers.compile_failure() is None
        for key in ("depth", "depth_conf", "world_points"):
            g, r = got[key][0].float().cpu().numpy(), reference[key]
            rel = np.linalg.norm(g - r) / np.linalg.norm(r)
            print(f"golden, aggregator {autocast or 'float32'}, DPT bfloat16{' compiled' if compiled else ''}: "
                  f"{key} relative error {rel:.3e}")
            assert rel < 2e-2, (autocast, compiled, key, rel)
