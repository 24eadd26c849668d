#!/usr/bin/env bash
# Create or update the project's virtualenv in .venv/ (scripts/install_venv.sh; a no-op when
# nothing changed) and export the environment for colcon and the ROS 2 wheels.
# Source it (`. scripts/setup_env.sh`) to also get the environment variables below; the shell
# options of the caller are left as they were.
HTTM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HTTM_ROOT/.venv"

bash "$HTTM_ROOT/scripts/install_venv.sh" || { echo "setup: failed (see above)" >&2; return 1 2>/dev/null || exit 1; }

# Environment for colcon, ament and ROS tools from the wheels.
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$HTTM_ROOT/.ws/ros_log}"
# The ROS 2 launch stack installed from ../shared/ros-tooling (its folder), or empty: a ROS install's
# own is used, or there is none (the launch tests then report themselves skipped).
HTTM_ROS_TOOLING_IN_USE="$(cat "$VENV/.httm_ros_tooling" 2>/dev/null || true)"
export HTTM_ROS_TOOLING_IN_USE
# Keep DDS discovery on this host.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export HTTM_ROOT
