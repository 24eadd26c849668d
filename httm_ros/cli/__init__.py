"""Command-line tools of httm_ros."""
