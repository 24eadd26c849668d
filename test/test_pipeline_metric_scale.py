"""Metric scale from sensor depth (pipeline/metric_scale.py) and the streaming core's use of it:
synthetic RGB-D with a known scale, noisy and holey sensor depth."""

import math

import numpy as np
import pytest

from httm_ros.pipeline import KeyframeConfig, StreamConfig, StreamingReconstructor, WindowConfig
from httm_ros.pipeline.metric_scale import MetricScale, MetricScaleConfig, ScaleEstimate, window_scale
from httm_ros.synthetic import demo_sequence
from httm_ros.synthetic.oracle import OraclePredictor

W, H = 112, 84


def _rgbd(scale, rng, shape=(3, 60, 80), noise=0.02, holes=0.3, outliers=0.05):
    """(predicted world-unit depth, conf, sensor metres) with sensor = scale x predicted, noisy,
    with zeros / NaN holes and gross outliers."""
    predicted = rng.uniform(0.5, 4.0, shape)
    conf = 1.0 + 5.0 * rng.random(shape)
    sensor = scale * predicted * (1.0 + noise * rng.standard_normal(shape))
    hole = rng.random(shape)
    sensor[hole < holes / 2] = 0.0
    sensor[(hole >= holes / 2) & (hole < holes)] = np.nan
    bad = rng.random(shape) < outliers
    sensor[bad] *= rng.uniform(0.2, 5.0, int(bad.sum()))
    return predicted, conf, sensor


@pytest.mark.parametrize("scale", [0.05, 1.0, 37.0])
def test_window_scale_recovers_a_known_scale_through_noise_holes_and_outliers(scale):
    rng = np.random.default_rng(1)
    predicted, conf, sensor = _rgbd(scale, rng)
    cfg = MetricScaleConfig(min_depth=0.0, max_depth=1e3)
    est = window_scale(predicted, conf, sensor, cfg)
    assert est.scale == pytest.approx(scale, rel=0.005)               # stated tolerance: 0.5 %
    assert 0.01 < est.spread < 0.04                                   # ~ the 2 % noise
    valid = np.isfinite(sensor) & (sensor > 0)
    assert 0.35 * valid.sum() < est.pixels < 0.55 * valid.sum()       # half by confidence, outliers out


def test_window_scale_uses_confident_pixels_and_the_sensor_range():
    rng = np.random.default_rng(2)
    predicted, conf, sensor = _rgbd(2.0, rng, outliers=0.0, holes=0.0)
    low = conf < np.quantile(conf, 0.5)
    sensor[low] = 10.0 * predicted[low]                               # wrong only where confidence is low
    est = window_scale(predicted, conf, sensor, MetricScaleConfig(max_depth=1e3))
    assert est.scale == pytest.approx(2.0, rel=0.005)
    est = window_scale(predicted, conf, sensor, MetricScaleConfig(conf_quantile=0.0, mad_k=100.0, max_depth=1e3))
    assert est.scale > 3.0                                            # without the confidence cut: wrong
    far = window_scale(predicted, conf, sensor, MetricScaleConfig(max_depth=1.0, min_pixels=1))
    assert far.pixels < est.pixels / 4                                # readings above max_depth are unused


def test_too_few_pixels_or_no_valid_depth_give_no_estimate():
    rng = np.random.default_rng(3)
    predicted, conf, sensor = _rgbd(1.0, rng, shape=(1, 10, 10))
    assert window_scale(predicted, conf, sensor, MetricScaleConfig(min_pixels=200)) is None
    assert window_scale(predicted, conf, np.full_like(sensor, np.nan), MetricScaleConfig(min_pixels=1)) is None
    assert window_scale(np.full_like(predicted, np.nan), conf, sensor, MetricScaleConfig(min_pixels=1)) is None
    with pytest.raises(ValueError, match="one shape"):
        window_scale(predicted, conf[..., :5], sensor, MetricScaleConfig())


def test_smoothing_ema_and_running_median():
    ema = MetricScale(MetricScaleConfig(smoothing="ema", ema_alpha=0.5))
    assert ema.scale is None and ema.update(None) is None
    assert ema.update(ScaleEstimate(2.0, 0.0, 1)) == pytest.approx(2.0)      # starts at the first estimate
    assert ema.update(ScaleEstimate(8.0, 0.0, 1)) == pytest.approx(4.0)      # geometric: exp(mean log)
    assert ema.update(None) == pytest.approx(4.0) and ema.windows == 2
    med = MetricScale(MetricScaleConfig(smoothing="median", median_windows=3))
    for s in (1.0, 1.0, 100.0):                                               # one wild window
        out = med.update(ScaleEstimate(s, 0.0, 1))
    assert out == pytest.approx(1.0)
    for s in (3.0, 3.0):                                                      # the window slides
        out = med.update(ScaleEstimate(s, 0.0, 1))
    assert out == pytest.approx(3.0)
    med.reset()
    assert med.scale is None and med.windows == 0


@pytest.mark.parametrize("field,value", [("conf_quantile", 1.0), ("min_depth", -1.0), ("max_depth", math.inf),
                                         ("mad_k", 0.0), ("min_pixels", 0), ("smoothing", "mean"),
                                         ("ema_alpha", 0.0), ("median_windows", 0)])
def test_config_rejects_values_outside_the_ranges(field, value):
    with pytest.raises(ValueError, match=f"MetricScaleConfig.{field} must be"):
        MetricScaleConfig(**{field: value})


@pytest.fixture(scope="module")
def seq():
    return demo_sequence(num_frames=22, width=W, height=H, seed=0, speed=0.05)


def _stream(seq, **kw):
    oracle = OraclePredictor(seq, seed=1, noise=0.02)
    cfg = StreamConfig(window=WindowConfig(size=6, overlap=2), keyframes=KeyframeConfig(enabled=False),
                       image_width=W, **kw)
    return oracle, StreamingReconstructor(oracle, cfg)


def test_stream_recovers_the_metric_scale_from_noisy_holey_sensor_depth(seq):
    """Sensor depth = ground truth in metres (2 % noise, 30 % holes as 0 / NaN); the oracle's world
    unit is its first window's random scale, so metres per world unit = 1 / that scale."""
    oracle, rec = _stream(seq)
    rng = np.random.default_rng(4)
    reports = []
    for i in range(len(seq)):
        depth = seq.depth[i] * (1.0 + 0.02 * rng.standard_normal(seq.depth[i].shape))
        hole = rng.random(depth.shape)
        depth[hole < 0.15] = 0.0
        depth[(hole >= 0.15) & (hole < 0.3)] = np.nan
        for result in rec.push(seq.images[i], float(i), depth=depth):
            assert result.accepted
            reports.append((result, result.metric))
    truth = 1.0 / oracle.calls[0]["scale"]
    assert len(reports) == 5                                                 # 6 + 4 x 4 keyframes
    for result, metric in reports:
        assert metric.sensor_frames == result.num_keyframes - result.num_overlap
        assert metric.window.scale == pytest.approx(truth, rel=0.02)          # stated tolerance: 2 %
        assert 0 < metric.window.spread < 0.1 and metric.window.pixels > 1000
    assert rec.metric.scale == pytest.approx(truth, rel=0.02)
    last, _ = reports[-1]
    k = last.num_keyframes - 1
    metric_depth = last.depth[k].numpy() * rec.metric.scale                    # world units -> metres
    gt = seq.depth[last.frame_ids[k]]
    assert np.nanmedian(np.abs(metric_depth / gt - 1.0)) < 0.03
    rec.reset()
    assert rec.metric.scale is None                                           # a new world, a new scale


def test_stream_without_sensor_depth_reports_no_scale(seq):
    _, rec = _stream(seq)
    results = [r for i in range(6) for r in rec.push(seq.images[i], float(i))]
    assert results[0].metric.window is None and results[0].metric.scale is None
    assert results[0].metric.sensor_frames == 0
