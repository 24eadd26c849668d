"""Training httm-vggt-synth, a small VGGT, on the synthetic renderer (``httm-train``).

Modules: ``data`` (random rooms / paths / intrinsics, batched rendering, VGGT's ground-truth
normalisation, the held-out split), ``losses`` (camera Huber loss, confidence-weighted depth loss
with gradient term), ``loop`` (AdamW, warmup + cosine, bf16 autocast, time budget), ``resume``
(resumable state split into parts), ``heldout`` (held-out metrics), ``outputs`` (weights + model
card, log, curves), ``cli``. Nothing here imports ROS.
"""
