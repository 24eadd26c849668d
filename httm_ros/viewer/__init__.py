"""httm-view: a browser viewer (viser) of the node's output topics or of an output bag.

    viser_scene.py   ReconstructionScene: numpy in, viser scene + GUI out (no ROS)
    msg_adapter.py   messages (rclpy or rosbags) -> numpy -> the scene (SceneFeed)
    bag_feed.py      an output bag (MCAP, as written by httm-reconstruct-bag / the demo) -> SceneFeed
    live_feed.py     rclpy subscriptions to a running reconstruct_node -> SceneFeed
    screenshot.py    headless chromium screenshot of a viewer (write_screenshot)
    command.py       the httm-view command line
"""
