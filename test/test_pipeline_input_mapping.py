"""Source frame -> model input mapping (pipeline/input_mapping.py) and given intrinsics in the
streaming core: exactly VGGT's crop preprocessing, pixel centres and K consistent."""

import numpy as np
import pytest
import torch

from httm_ros.pipeline import KeyframeConfig, StreamConfig, StreamingReconstructor, WindowConfig
from httm_ros.pipeline.input_mapping import InputMapping, input_mapping
from httm_ros.synthetic import demo_sequence
from httm_ros.synthetic.oracle import OraclePredictor
from httm_ros.vggt.preprocess import model_input_rgb, model_input_size


def _k(fx, fy, cx, cy):
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


@pytest.mark.parametrize("src_hw", [(480, 640), (640, 480), (720, 1280), (518, 518), (1000, 300)])
def test_mapping_is_vggt_crop_and_round_trips(src_hw):
    model_hw = model_input_size(*src_hw, "crop", 518, 14)
    m = input_mapping(src_hw, model_hw, 518)
    assert m.model_hw == model_hw and m.resized_hw[1] == 518
    assert m.top == (max(m.resized_hw[0], 518) - 518) // 2
    uv = np.array([[0.0, 0.0], [src_hw[1] - 1.0, src_hw[0] / 2], [123.4, 56.7]])
    np.testing.assert_allclose(m.to_source(m.to_model(uv)), uv, atol=1e-9)
    k_src = _k(500.0, 510.0, src_hw[1] / 2 - 3.0, src_hw[0] / 2 + 2.0)
    k = m.intrinsics(k_src)
    xyz = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0]])
    proj = lambda K, p: (p @ K.T)[:, :2] / p[:, 2:]                   # noqa: E731
    np.testing.assert_allclose(proj(k, xyz), m.to_model(proj(k_src, xyz)), atol=1e-9)


def test_portrait_crop_region_and_a_marked_pixel_lands_where_predicted():
    src_hw = (400, 200)                                            # portrait: resized 1036 high, cropped
    model_hw = model_input_size(*src_hw, "crop", 518, 14)
    m = input_mapping(src_hw, model_hw, 518)
    assert m.resized_hw == (1036, 518) and m.top == 259 and model_hw == (518, 518)
    x, y, w, h = m.source_region()
    assert (x, w) == (0.0, 200.0) and y == pytest.approx(100.0) and h == pytest.approx(200.0)
    img = np.zeros((400, 200, 3), np.uint8)
    img[240:250, 60:70] = 255                                      # a bright square, centre (64.5, 244.5)
    out = model_input_rgb(img, "crop", 518, 14).astype(float).sum(-1)
    v, u = np.unravel_index(np.argmax(out), out.shape)
    centre = np.array([(out * np.arange(out.shape[1])).sum() / out.sum(),
                       (out * np.arange(out.shape[0])[:, None]).sum() / out.sum()])
    np.testing.assert_allclose(centre, m.to_model(np.array([64.5, 244.5])), atol=0.3)


def test_rescale_and_identity_mappings():
    plain = input_mapping((100, 300), (84, 112), 112)             # another aspect ratio: plain resize
    assert plain == InputMapping((100, 300), (84, 112), (84, 112)) and plain.top == 0
    assert input_mapping((84, 112), (84, 112), 112).identity
    assert input_mapping((84, 112), (84, 112), None).identity


def test_resample_is_nearest_and_keeps_holes():
    m = input_mapping((168, 224), (84, 112), 112)                 # 2x down
    depth = np.arange(168 * 224, dtype=np.float32).reshape(168, 224)
    depth[100, :] = np.nan
    out = m.resample(depth)
    assert out.shape == (84, 112)
    assert set(np.unique(out[np.isfinite(out)])) <= set(np.unique(depth[np.isfinite(depth)]))
    assert np.isnan(out[50]).all() or np.isfinite(out[50]).all()
    with pytest.raises(ValueError, match="expected a 224x168"):
        m.resample(depth[:10])


def test_given_intrinsics_replace_the_predicted_ones_in_the_core():
    seq = demo_sequence(num_frames=10, width=112, height=84, seed=0, speed=0.05)
    rec = StreamingReconstructor(OraclePredictor(seq, seed=1), StreamConfig(
        window=WindowConfig(size=6, overlap=2), keyframes=KeyframeConfig(enabled=False), image_width=112))
    up = lambda img: np.repeat(np.repeat(img, 2, 0), 2, 1)          # noqa: E731 - 224x168 source
    k_src = _k(200.0, 201.0, 111.5, 83.5)                          # the source camera (fx a bit off the truth)
    results = [r for i in range(10) for r in rec.push(up(seq.images[i]), float(i), intrinsics=k_src)]
    assert len(results) == 2 and all(r.accepted for r in results)
    expected = input_mapping((168, 224), (84, 112), 112).intrinsics(k_src)
    assert expected[0, 0] == 100.0 and expected[0, 2] == pytest.approx(55.5)
    for r in results:
        torch.testing.assert_close(r.intrinsics, torch.as_tensor(expected, dtype=torch.float32).expand_as(r.intrinsics))
        assert r.focal_given == pytest.approx(100.0)
        assert r.focal_predicted == pytest.approx(float(seq.intrinsics[0, 0, 0]), rel=1e-5)
        assert r.given_intrinsics == r.num_keyframes - r.num_overlap
    with pytest.raises(ValueError, match="finite pinhole K"):
        rec.push(up(seq.images[0]), 11.0, intrinsics=_k(0.0, 1.0, 1.0, 1.0))
