"""httm-bench: every benchmark of the project (one command line, ``cli.SUBCOMMANDS``).

    python -m httm_ros.bench e2e --frames 100 300 --modes httm uniform dense --out OUT.json
    python -m httm_ros.bench layer --frames 1000 --out OUT.json       # Table 4 breakdown
    python -m httm_ros.bench latency --frames 100 300 1000            # one global-attention call
    python -m httm_ros.bench fidelity --out bench/fidelity_proxy.json # merged vs dense attention
    python -m httm_ros.bench report bench/results/*.json              # BENCHMARKS.md + PNG

Modules: ``workload`` (random-weight VGGT-1B built on the GPU, synthetic video frames),
``harness`` (device, model build, common options), ``e2e`` (whole forward: seconds, peak memory,
time breakdown via ``timeline``), ``layer`` (one global layer, stage by stage), ``latency``,
``fidelity``, ``stream`` (streaming core), ``node`` (ROS node overhead), ``compile_check``
(Triton kernels compiled for sm_90), ``report`` (BENCHMARKS.md from JSON only: ``results``,
``markdown_tables``, ``targets``, ``plot``), ``cli``. See BENCHMARKS.md and bench/gpu_suite.sh.
"""
