"""Start-up warm-up (httm.warm_up) and the attention-kernel choice of the Triton path."""

import pytest
import torch

from httm_ros.httm import HTTMConfig, patch, warm_up
from httm_ros.httm.warmup import warm_up_frames
from httm_ros.vggt import VGGT, VGGTConfig


def test_warm_up_frames_pan_over_one_texture():
    video = warm_up_frames(3, (28, 42), torch.device("cpu"), pan=2)
    assert video.shape == (1, 3, 3, 28, 42) and 0 <= video.min() and video.max() <= 1
    assert torch.equal(video[0, 1, :, :, :-2], video[0, 0, :, :, 2:])     # frame 1 = frame 0 moved 2 px


@pytest.mark.parametrize("merge", [None, HTTMConfig(impl="torch")])
def test_warm_up_runs_forwards(merge):
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).eval()
    stats = patch(model, merge)
    out = warm_up(model, frames=4, image_hw=(28, 42), forwards=2)
    assert out["frames"] == 4 and len(out["seconds"]) == 2 and all(s > 0 for s in out["seconds"])
    if merge is not None:
        assert len(stats.records) > 0
    patch(model, None)


def test_attention_sdpa_choices():
    assert HTTMConfig().attention_sdpa == "flash"
    assert HTTMConfig(attention_sdpa="cudnn").attention_sdpa == "cudnn"
    with pytest.raises(ValueError, match="attention_sdpa"):
        HTTMConfig(attention_sdpa="fast")
