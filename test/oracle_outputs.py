"""Output files of a real offline run (httm-reconstruct-bag's run_bag) with the oracle predictor on
the synthetic demo sequence: bag/ (MCAP), map.ply, trajectory.tum, plus the ground truth. Used by
the viewer and third-party reader tests (meaningful geometry, no model, a few seconds on CPU)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAMES, WIDTH, HEIGHT = 24, 112, 84          # both sides multiples of 14: the oracle needs no resize


@dataclass
class OracleOutputs:
    out: Path              # bag/, map.ply, trajectory.tum
    sequence: object       # the synthetic sequence (ground truth)
    report: dict
    rec: object            # the StreamingReconstructor after the run


def _input_bag(path: Path, seq) -> Path:
    from httm_ros.ros import codec
    from httm_ros.tools.bag_io import OutputBag

    with OutputBag(path) as bag:
        for i, (img, t) in enumerate(zip(seq.images, seq.timestamps)):
            stamp = codec.sec_to_stamp(100.0 + float(t))
            bag.write_message("/camera/image_raw", codec.rgb_to_image(img, codec.make_header(stamp, "camera")),
                              int(round((100.0 + float(t)) * 1e9)))
        bag.commit()
    return path


def oracle_outputs(root: Path) -> OracleOutputs:
    """Run the demo sequence through run_bag with an OraclePredictor into ``root``/result."""
    from httm_ros.synthetic.oracle import OraclePredictor
    from httm_ros.ros import params
    from httm_ros.ros.model_runner import build_model_runner
    from httm_ros.synthetic import demo_sequence
    from httm_ros.tools.reconstruct_bag import run_bag

    seq = demo_sequence(num_frames=FRAMES, width=WIDTH, height=HEIGHT, seed=0, speed=0.04)
    values = params.defaults()
    values.update(image_size=WIDTH, keyframe_policy="every", window_size=8, window_overlap=3, device="cpu")
    assert not params.validate(values)
    runner = build_model_runner(values, predictor=OraclePredictor(seq, noise=0.01, seed=0))
    out = root / "result"
    out.mkdir(parents=True)
    report = run_bag(_input_bag(root / "input", seq), None, values, out, runner)
    return OracleOutputs(out, seq, report, runner.reconstructor)


def ground_truth_stamps(seq) -> np.ndarray:
    """The input bag's stamps of the sequence's frames (seconds), as in trajectory.tum."""
    return 100.0 + np.asarray(seq.timestamps, np.float64)
