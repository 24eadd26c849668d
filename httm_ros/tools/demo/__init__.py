"""httm-demo: the default demo (``scripts/demo``): a synthetic rosbag replayed into reconstruct_node.

    httm-demo [--weights model.safetensors] [--out outputs/demo] [--frames N] [--model-config 1b|tiny|synth]
    python -m httm_ros.tools.demo ...              (the same)

1. renders the built-in synthetic room (httm_ros.synthetic) into a rosbag2 (MCAP, topics
   /camera/image_raw and /camera/camera_info), once: it is cached under .cache/demo/;
2. starts the installed ``reconstruct_node`` executable as a separate process with the parameters
   and remappings that ``ros2 launch httm_ros reconstruct.launch.py bag:=<demo bag>`` gives it
   (httm_ros.tools.launch_plan, config/reconstruct.yaml + the demo's own params file);
3. replays the bag into it over DDS with /clock (httm_ros.tools.replay.Player; DDS stays on this
   host: own domain id, shared-memory transport, localhost discovery), calls ~/flush at the end;
4. records every output topic, and writes to the output folder: ``outputs_bag/`` (MCAP of the
   recorded outputs), ``map.ply``, ``trajectory.tum``, ``preview.png`` (map + trajectory + input
   frames), ``viewer.png`` (the browser viewer httm-view on the output bag, through headless
   chromium; a warning line where that cannot run), ``summary.json``, ``node.log``,
   ``demo_params.yaml``; prints a summary.

What runs: without a checkpoint the shipped httm-vggt-synth (httm_ros.weights.synth_weights(): a
~5M-parameter network trained on synthetic rooms only, NOT VGGT-1B) on CPU or CUDA, on 120 frames
rendered at its model card's size (168x126), every frame a keyframe, windows of 16 (overlap 6); the
summary compares the published path and map with the sequence's ground truth (ATE after Sim(3)
alignment, map point distances to the true surfaces: :mod:`.accuracy`). With WEIGHTS=/--weights
(VGGT-1B): VGGT-1B at 518 px on CUDA, at 224 px on a few frames on a CPU (about a minute per
window). Deterministic test weights only when asked for (``--model-config tiny``: the tiny network,
a fast plumbing check; ``--model-config 1b`` without weights) or when the shipped weights are
missing: every stage runs, the geometry is meaningless, and the demo says so.

Modules, in the order the demo uses them:

- :mod:`.run`: the command line and the orchestration (``main``, ``run_demo``);
- :mod:`.demo_settings`: what runs by machine (sizes, model) and the node's params file;
- :mod:`.demo_bag`: the synthetic sequence as a cached rosbag, and its thumbnails;
- :mod:`.node_process`: the node as a process, waits that fail early when it dies;
- :mod:`.recorder`: the node's outputs and diagnostics as they arrive, and when it is idle;
- :mod:`.artifacts`: the files written at the end (bag, PLY, TUM, preview, viewer screenshot, summary.json);
- :mod:`.accuracy`: the published path and map against the sequence's ground truth;
- :mod:`.preview`: the PNG preview (map + trajectory + input frames, PIL only);
- :mod:`.console`: what is printed: progress lines, the final report and its verdicts.
"""
