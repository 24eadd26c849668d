"""Dense-path speed/memory changes in httm_ros.vggt.layers / aggregator: token-chunked inference
gives the same outputs, SDPA with cuDNN first gives the same attention, and the aggregator keeps
its outputs in the autocast dtype only under autocast."""

import pytest
import torch
import torch.nn.functional as F

import httm_ros.vggt.layers as layers
from httm_ros.vggt import VGGT, VGGTConfig

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VGGT(VGGTConfig.tiny()).eval()


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("b,n,rows", [(1, 10, 100), (1, 10, 3), (7, 5, 11), (3, 10, 10), (4, 9, 8)])
def test_row_chunks_cover_every_row_once(b, n, rows):
    seen = torch.zeros(b, n, dtype=torch.long)
    for bs, ns in layers.row_chunks(b, n, rows):
        assert (bs.stop - bs.start) * (ns.stop - ns.start) <= max(rows, n)
        seen[bs, ns] += 1
    assert (seen == 1).all()


def test_chunked_inference_same_outputs(tiny, monkeypatch):
    images = torch.rand(1, 5, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tiny(images)
        monkeypatch.setattr(layers, "CHUNK_ROWS", 37)                     # frame and global blocks chunk
        got = tiny(images)
    for key in ref:
        assert rel(got[key], ref[key]) < 1e-5, key


def test_chunked_inference_with_merging(tiny, monkeypatch):
    """Merged attention through the chunked path (attend_owned -> MergeCore.call_owned)."""
    from httm_ros.httm import HTTMConfig, UniformMergeConfig, patch

    images = torch.rand(1, 5, 3, 56, 70, generator=torch.Generator().manual_seed(4))
    for config in (HTTMConfig(spatial_block=8, temporal_frames=2, impl="torch"), UniformMergeConfig()):
        with torch.no_grad():
            patch(tiny, config)
            ref = tiny(images)
            with monkeypatch.context() as m:
                m.setattr(layers, "CHUNK_ROWS", 37)
                got = tiny(images)
            patch(tiny, None)
        for key in ref:
            assert rel(got[key], ref[key]) < 1e-5, (type(config).__name__, key)


def test_chunking_only_without_autograd(tiny, monkeypatch):
    monkeypatch.setattr(layers, "CHUNK_ROWS", 8)
    x = torch.randn(1, 30, 64)
    assert layers.chunked_inference(x) is False                            # grad mode on
    with torch.no_grad():
        assert layers.chunked_inference(x) is True


def test_store_dtype_follows_autocast(tiny):
    images = torch.rand(1, 2, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    agg = tiny.aggregator
    with torch.no_grad():
        assert all(t.dtype == torch.float32 for t in agg(images).values())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = agg(images)
            assert all(t.dtype == torch.bfloat16 for t in out.values())
            agg.store_autocast_dtype = False
            try:
                assert all(t.dtype == torch.float32 for t in agg(images).values())
            finally:
                agg.store_autocast_dtype = True


def test_sdpa_on_cpu_is_plain():
    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    assert torch.equal(layers.sdpa(q, k, v), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("shape", [(1, 16, 5003, 64), (3, 16, 1041, 64), (1, 4, 777, 64)])
def test_sdpa_cudnn_first_matches_math_cuda(shape):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, h, n, d = shape
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(b, h, n, d, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(b, n, 3, h, d, device="cuda", generator=g, dtype=torch.bfloat16)[:, :, 2].transpose(1, 2)
    got = layers.sdpa(q, k[:, :, : n - 3], v[:, :, : n - 3])                # Nk != Nq, strided v
    with sdpa_kernel([SDPBackend.MATH]):
        ref = F.scaled_dot_product_attention(q.float(), k[:, :, : n - 3].float(), v[:, :, : n - 3].float())
    assert rel(got.float(), ref) < 1e-2
    assert layers._SDPA_STATE["priority_ok"]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_chunked_inference_cuda_bf16(tiny, monkeypatch):
    model = VGGT(VGGTConfig.tiny()).cuda().eval()
    images = torch.rand(1, 6, 3, 56, 70, device="cuda")
    with torch.no_grad():
        ref = model(images)
        monkeypatch.setattr(layers, "CHUNK_ROWS", 50)
        got = model(images)
    for key in ref:
        assert rel(got[key], ref[key]) < 2e-2, key
