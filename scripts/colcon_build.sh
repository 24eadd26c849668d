#!/usr/bin/env bash
# Build the package with colcon in the workspace .ws/ (src/httm_ros -> this repository).
# The workspace lives beside the sources because CMake refuses to export include paths that lie
# inside the package's source tree, and the virtualenv (.venv/, with NumPy's headers) does.
# With the ROS 2 launch stack from ../shared/ros-tooling (HTTM_ROS_TOOLING_IN_USE, see
# install_venv.sh), its interface packages (composition_interfaces for launch_ros, tf2_msgs) are
# symlinked into src/ and built first, without their linter tests; ../shared is never written to.
# Usage: scripts/colcon_build.sh   (then: source .ws/install/setup.bash)
#        HTTM_WS=DIR scripts/colcon_build.sh builds in another workspace folder.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
WS="${HTTM_WS:-$HTTM_ROOT/.ws}"
mkdir -p "$WS/src"
ln -sfn "$(python3 -c 'import os, sys; print(os.path.relpath(*sys.argv[1:]))' "$HTTM_ROOT" "$WS/src")" "$WS/src/httm_ros"
cd "$WS"
interfaces=()
for pkg in composition_interfaces tf2_msgs; do
  rm -f "src/$pkg"
  if [ -n "$HTTM_ROS_TOOLING_IN_USE" ]; then
    ln -s "$HTTM_ROS_TOOLING_IN_USE/src/$pkg" "src/$pkg"
    interfaces+=("$pkg")
  fi
done
cmake_args=(-DPython3_EXECUTABLE="$VENV/bin/python")
if [ ${#interfaces[@]} -gt 0 ]; then
  colcon build --base-paths src --packages-select "${interfaces[@]}" --event-handlers console_cohesion+ \
    --cmake-args "${cmake_args[@]}" -DBUILD_TESTING=OFF
fi
colcon build --base-paths src --packages-select httm_ros --event-handlers console_cohesion+ \
  --cmake-args "${cmake_args[@]}" -DBUILD_TESTING=ON
