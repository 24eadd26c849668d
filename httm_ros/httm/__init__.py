"""HTTM: Head-wise Temporal Token Merging (arXiv 2511.21317) for VGGT's global attention.

    from httm_ros.httm import HTTMConfig, patch
    stats = patch(model, HTTMConfig())       # merging on in every global block
    out = model(images); stats.records        # per-call kept tokens, outliers, times
    patch(model, None)                        # dense again

Modules: ``config`` (HTTMConfig, UniformMergeConfig), ``blocks`` (temporal reordering plans),
``merge`` (matching, aggregation, outlier filtering, unmerging: the torch reference),
``attention`` (HTTM attention), ``uniform`` (FastVGGT-style baseline), ``patch`` (the hook),
``stats``, ``cli`` (command-line options), ``fidelity`` (the fidelity proxy benchmark),
``latency`` (one global-attention call timed: dense vs HTTM vs uniform). See docs/MERGING.md.
"""

from .attention import httm_attention
from .cli import add_merge_arguments, merge_config_from_args
from .config import HTTMConfig, UniformMergeConfig
from .patch import MergeCore, patch, merge_stats
from .stats import MergeRecord, MergeStats
from .uniform import uniform_attention

__all__ = [
    "HTTMConfig", "UniformMergeConfig", "patch", "merge_stats", "MergeCore", "MergeStats",
    "MergeRecord", "httm_attention", "uniform_attention", "add_merge_arguments",
    "merge_config_from_args",
]
