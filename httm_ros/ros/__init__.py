"""ROS 2 shell around the streaming reconstruction core.

- :mod:`.codec`: message <-> numpy conversions (pure functions, no DDS);
- :mod:`.params`: every node parameter, declared from one table, with validation;
- :mod:`.reconstruct_node`: the ``reconstruct_node`` executable;
- :mod:`.bench`: node-overhead benchmark.
"""
