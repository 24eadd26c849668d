"""Evaluation tools: the HTTM paper's reconstruction metrics on your data, and checks without any.

    httm-eval run SEQUENCE --weights model.safetensors --modes none,uniform,httm --stride 10 --out DIR
    httm-eval synthetic --out DIR            # oracle on a rendered sequence: no checkpoint, no data
    httm-eval fidelity --out DIR             # the HTTM fidelity proxy (attention error vs dense)

Modules: ``datasets`` (7-Scenes, Neural RGB-D, TUM RGB-D and generic-folder readers),
``reference`` (ground-truth points from meshes / clouds), ``metrics`` (ATE, RPE, ICP, accuracy /
completeness), ``evaluate`` (model inputs, clouds, offline and streaming runs, alignment +
metrics), ``resources`` (peak memory), ``eval_report`` (JSON + Markdown), ``eval_cli``.
Ground truth with known errors (for checking the metrics): :mod:`httm_ros.synthetic.oracle`.
See docs/EVALUATION.md.
"""

from .datasets import LAYOUTS, DatasetError, DatasetIndex, detect_layout, open_dataset
from .evaluate import (EvalOptions, Reconstruction, depth_cloud, evaluate, model_inputs, prediction_cloud,
                       run_offline, run_streaming)
from .resources import PeakMemory

__all__ = [
    "DatasetError", "DatasetIndex", "EvalOptions", "LAYOUTS", "PeakMemory", "Reconstruction",
    "depth_cloud", "detect_layout", "evaluate", "model_inputs", "open_dataset", "prediction_cloud", "run_offline",
    "run_streaming",
]
