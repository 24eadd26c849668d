"""ROS 2 shell around the streaming reconstruction core (data flow order).

- :mod:`.params`: every node parameter, declared from one table, with validation;
  :mod:`.core_config`: parameter values -> the core's configuration objects;
- :mod:`.model_runner`: the model (wrapped so one failed window never stops the stream) and the
  streaming core, built from the parameters;
- :mod:`.codec`: message <-> numpy conversions (pure functions, no DDS), ROS stamps;
- :mod:`.frame_queue`: decoded frames from the callbacks to the inference thread;
- :mod:`.messages`: one window's output messages (host copies, then conversion);
  :mod:`.window_stats` / :mod:`.node_counters`: the WindowStats message and what it counts;
- :mod:`.window_publisher`: the publisher thread; :mod:`.diagnostics`: /diagnostics;
  :mod:`.services`: ~/flush and ~/reset;
- :mod:`.tf_publisher`: /tf and /tf_static (tf2_ros when present, else tf2_msgs directly);
  :mod:`.stop_signals`: one path for SIGINT/SIGTERM;
- :mod:`.reconstruct_node`: the ``reconstruct_node`` executable (the wiring of the above).
- :mod:`.lifecycle_node`: ``reconstruct_lifecycle_node``, the same node as a managed (lifecycle) node.

DDS session helpers for the tools, benchmarks and tests: :mod:`httm_ros.tools.local_dds`.

The node-overhead benchmark is :mod:`httm_ros.bench.node`.
"""
