#!/usr/bin/env bash
# Build the package with colcon in the workspace .ws/ (src/httm_ros -> this repository).
# The workspace lives beside the sources because CMake refuses to export include paths that lie
# inside the package's source tree, and the virtualenv (.venv/, with NumPy's headers) does.
# Usage: scripts/colcon_build.sh   (then: source .ws/install/setup.bash)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
mkdir -p "$HTTM_ROOT/.ws/src"
ln -sfn ../.. "$HTTM_ROOT/.ws/src/httm_ros"
cd "$HTTM_ROOT/.ws"
colcon build --base-paths src --event-handlers console_cohesion+ \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=ON
