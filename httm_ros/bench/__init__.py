"""httm-bench: GPU benchmarks of VGGT-1B dense, uniform (FastVGGT-style) and HTTM merging.

    python -m httm_ros.bench e2e --frames 100 300 --modes httm uniform dense --out OUT.json
    python -m httm_ros.bench layer --frames 1000 --out OUT.json       # Table 4 breakdown
    python -m httm_ros.bench report bench/results/*.json              # BENCHMARKS.md + PNG

Modules: ``env`` (commit, versions, device), ``workload`` (random-weight VGGT-1B built on the GPU,
synthetic video frames), ``e2e`` (whole forward: seconds, peak memory, time breakdown),
``layer`` (one global layer, stage by stage), ``report`` (tables and plot from JSON only),
``cli``. See BENCHMARKS.md and bench/gpu_suite.sh.
"""
