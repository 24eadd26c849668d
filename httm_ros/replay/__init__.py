"""The user workflow around reconstruct_node: launch arguments, configuration, rosbag replay, demo.

- :mod:`.config_yaml`: ``config/reconstruct.yaml`` generated from the parameter table
  (``httm_ros.ros.params``, the one source of truth);
- :mod:`.launch_args`: launch arguments -> the node's parameters, remaps and the bag player's
  command (pure Python, shared by ``launch/reconstruct.launch.py`` and the tests);
- :mod:`.bag`: reading image topics of rosbag2 bags (sqlite3 or MCAP) and writing output bags
  with the ``rosbags`` library (no rosbag2_py needed);
- :mod:`.replay`: ``httm-replay``, a bag -> DDS player with /clock, for machines without ``ros2 bag``;
- :mod:`.reconstruct_bag`: ``httm-reconstruct-bag``, offline reconstruction of a bag (no DDS);
- :mod:`.preview`: a PNG preview of a map cloud and a trajectory (PIL only);
- :mod:`.demo`: ``httm-demo``, the default demo behind ``scripts/demo``.
"""
