"""Tools for users around reconstruct_node: launch arguments, parameters file, rosbags, the demo.

- :mod:`.params_yaml`: ``config/reconstruct.yaml`` generated from the parameter table
  (``httm_ros.ros.params``, the one source of truth);
- :mod:`.launch_plan`: launch arguments -> a :class:`~.launch_plan.LaunchPlan` (the node's
  parameters, remaps and the bag player's command; pure Python, shared by
  ``launch/reconstruct.launch.py``, the demo and the tests);
- :mod:`.bag_io`: reading image topics of rosbag2 bags (sqlite3 or MCAP) and writing output bags
  with the ``rosbags`` library (no rosbag2_py needed);
- :mod:`.replay`: ``httm-replay``, a bag -> DDS player with /clock, for machines without ``ros2 bag``;
- :mod:`.reconstruct_bag`: ``httm-reconstruct-bag``, offline reconstruction of a bag (no DDS);
- :mod:`.reconstruct`: ``httm-reconstruct``, offline reconstruction of an image folder (no ROS);
- :mod:`.run_summary`: run summaries from WindowStats messages (printed and written as JSON);
- :mod:`.demo`: ``httm-demo``, the default demo behind ``scripts/demo`` (its own sub-package).
"""
