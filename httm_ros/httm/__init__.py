"""HTTM: Head-wise Temporal Token Merging (arXiv 2511.21317) for VGGT's global attention.

    from httm_ros.httm import HTTMConfig, patch
    stats = patch(model, HTTMConfig())       # merging on in every global block
    out = model(images); stats.records        # per-call kept tokens, outliers, times, impl
    patch(model, None)                        # dense again

Modules, in data-flow order: ``settings`` (HTTMConfig, UniformMergeConfig), ``regions`` (the
merging regions of temporal reordering: ``RegionLayout``), ``merge`` (matching, aggregation,
outlier filtering, unmerging: the torch reference; ``Matching``), ``kernels/`` (the Triton fast
path), ``attention`` (HTTM attention: torch or Triton), ``uniform`` (FastVGGT-style baseline),
``records`` (MergeRecord, MergeStats), ``patch`` (the hook), ``warmup`` (start-up forwards at
the window size), ``arguments`` (command-line options
of the tools). Benchmarks live in ``httm_ros.bench``. See docs/MERGING.md and docs/KERNELS.md.
"""

from .arguments import add_merge_arguments, merge_config_from_args
from .attention import httm_attention
from .patch import MergeCore, merge_stats, patch
from .records import MergeRecord, MergeStats
from .settings import HTTMConfig, UniformMergeConfig
from .uniform import uniform_attention
from .warmup import warm_up

__all__ = [
    "HTTMConfig", "UniformMergeConfig", "patch", "merge_stats", "MergeCore", "MergeStats",
    "MergeRecord", "httm_attention", "uniform_attention", "add_merge_arguments",
    "merge_config_from_args", "warm_up",
]
