"""Sort-free exact top-k (kernels/select.py) and attention over per-head query lengths
(kernels/ragged.py) against plain torch. No Triton here: these run on any device."""

import pytest
import torch
import torch.nn.functional as F

from httm_ros.httm.kernels.ragged import head_groups, ragged_attention, round_rows
from httm_ros.httm.kernels.select import positions, topk_mask

CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")]),
]


def padded_rows(lengths, groups):
    """Query rows the grouped calls attend (padding included)."""
    return sum(len(g) * max(lengths[i] for i in g) for g in groups)


def reference_mask(dev, k):
    """torch.topk over each row; picks with value <= 0 are invalid (select_outliers)."""
    kk = min(k, dev.shape[1])
    values, index = dev.topk(kk, dim=1)
    mask = torch.zeros_like(dev, dtype=torch.bool)
    mask.scatter_(1, index, values > 0)
    return mask


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 37, 500, 2999, 5000])
def test_topk_mask_matches_topk(device, k):
    g = torch.Generator().manual_seed(k)
    dev = torch.rand(2, 3000, generator=g) * torch.randint(0, 3, (2, 3000), generator=g) ** 2  # many zeros
    dev[:, :40] = -1.0                                                     # special tokens
    dev[1] *= 1e-3                                                         # other exponent range
    dev = dev.to(device)
    got = topk_mask(dev, k)
    assert torch.equal(got, reference_mask(dev, k))


@pytest.mark.parametrize("device", DEVICES)
def test_topk_mask_ties_and_extremes(device):
    g = torch.Generator().manual_seed(3)
    dev = torch.randint(1, 6, (3, 1000), generator=g).float().to(device)  # ties everywhere
    for k in (0, 1, 199, 200, 1000, 10 ** 6):
        got = topk_mask(dev, k)
        assert got.sum(1).tolist() == [min(k, 1000)] * 3
        lowest_picked = torch.where(got, dev, torch.inf).amin(1)
        highest_left = torch.where(got, -torch.inf, dev).amax(1)
        assert (lowest_picked >= highest_left).all()
    tiny = torch.tensor([[1e-40, 0.0, 3e-39, 2.0]], device=device)     # subnormals order as well
    assert topk_mask(tiny, 2).tolist() == [[False, False, True, True]]


def test_positions():
    mask = torch.tensor([[True, False, True, True], [False, False, False, False]])
    pos, counts = positions(mask)
    assert pos.tolist() == [[0, -1, 1, 2], [-1, -1, -1, -1]] and counts.tolist() == [3, 0]


def test_head_groups():
    assert head_groups([100] * 16, overhead=10) == [list(range(16))]      # balanced: one call
    lengths = [1000, 100, 100, 990, 100, 105]
    groups = head_groups(lengths, overhead=20)                            # 105 joins the 100s
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert sorted(map(sorted, groups)) == [[0, 3], [1, 2, 4, 5]]
    assert padded_rows(lengths, groups) == 2 * 1000 + 4 * 105
    assert len(head_groups(lengths, overhead=0)) >= 2
    assert head_groups(lengths, overhead=10 ** 9) == [sorted(range(6), key=lambda i: -lengths[i])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("overhead", [0, 10 ** 9])
@pytest.mark.parametrize("kernels", ["flash", "cudnn"])
def test_ragged_attention(device, overhead, kernels):
    g = torch.Generator().manual_seed(7)
    b, h, mq, mk, d = 2, 3, 40, 24, 16
    q, k, v = (torch.randn(b, h, m, d, generator=g).to(device) for m in (mq, mk, mk))
    bias = torch.randn(b, h, 1, mk, generator=g).to(device)
    lengths = [40, 12, 31, 5, 40, 20]
    o, info = ragged_attention(q, k, v, lengths, attn_mask=bias, overhead=overhead, kernels=kernels)
    assert info["groups"] == (1 if overhead else len(head_groups(lengths, 0)))
    for i, length in enumerate(lengths):
        bi, hi = divmod(i, h)
        ref = F.scaled_dot_product_attention(q[bi, hi, :length], k[bi, hi], v[bi, hi], attn_mask=bias[bi, hi])
        assert torch.allclose(o[bi, hi, :length], ref, atol=1e-5)


def test_round_rows():
    for rows in (1, 15, 16, 17, 100, 1000, 20817, 212345, 10 ** 6 + 3):
        r = round_rows(rows)
        assert 0 <= r - rows < max(16, rows * 0.032) and r % 16 == 0
    assert len({round_rows(n) for n in range(200000, 220000)}) <= 6           # few distinct shapes


@pytest.mark.parametrize("device", DEVICES)
def test_ragged_attention_rounding(device):
    g = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(1, 2, m, 16, generator=g).to(device) for m in (48, 20, 20))
    o, info = ragged_attention(q, k, v, [33, 20], rounding=round_rows)
    assert info["rows_attended"] == 2 * 48 and info["rows_needed"] == 53
    for hi, length in enumerate((33, 20)):
        ref = F.scaled_dot_product_attention(q[0, hi, :length], k[0, hi], v[0, hi])
        assert torch.allclose(o[0, hi, :length], ref, atol=1e-5)
