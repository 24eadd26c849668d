#!/usr/bin/env bash
# Create or update the project's virtualenv in .venv/ (idempotent: a no-op when nothing changed).
# Installs torch (TORCH_SPEC, default torch==2.13.0; an installed CUDA build is kept), everything
# pinned in requirements.txt (ROS 2 wheels, colcon, Triton, rosbags, ...) and httm_ros itself
# (editable), then repoints the ROS wheels' rosidl CMake exports at this interpreter.
# The ROS 2 launch stack (launch, launch_ros, launch_testing, the ros2 CLI): a ROS install's own
# when launch_ros is importable from outside the venv (used unchanged); else, when
# ../shared/ros-tooling (or HTTM_ROS_TOOLING=DIR) is present, its wheels and the pins of
# requirements-ros-tooling.txt. The choice (the tooling folder, or empty) is written to
# .venv/.httm_ros_tooling for scripts/setup_env.sh and scripts/colcon_build.sh.
# Run by scripts/setup_env.sh; any failure stops with a non-zero exit and writes no stamp.
HTTM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HTTM_ROOT/.venv"
set -euo pipefail
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"

_need_apt() {  # install Debian packages when a tool is missing and we may (root + apt-get)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing $* with apt-get" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >&2
  else
    echo "setup: missing $*; install them (e.g. sudo apt-get install $*) and run again" >&2
    exit 1
  fi
}

_system_launch_ros() {  # true when a ROS install (PYTHONPATH) provides launch_ros, not this venv
  "$VENV/bin/python" -c "import os, sys, launch_ros
sys.exit(os.path.realpath(launch_ros.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep))" "$VENV" 2>/dev/null
}

_tooling_dir() {  # the ros-tooling folder to install from; nothing on a ROS install or without one
  local dir="${HTTM_ROS_TOOLING-$HTTM_ROOT/../shared/ros-tooling}"
  if ! _system_launch_ros && [ -d "$dir/wheels" ]; then (cd "$dir" && pwd); fi
}

command -v cmake >/dev/null && command -v g++ >/dev/null || _need_apt cmake g++ make
# --- httm-view: Debian's chromium renders viser's WebGL headless
# (SwiftShader) for test/test_viewer_browser.py and the demo's viewer screenshot; only when missing.
command -v chromium >/dev/null || [ "$(id -u)" != 0 ] || _need_apt chromium
# --- end of the httm-view block
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" 2>/dev/null || { _need_apt python3-venv; "$PYTHON" -m venv "$VENV"; }
fi
exec 9>"$VENV/.httm_ros_install.lock"     # one install at a time: several shells source setup_env.sh
flock 9

TOOLING="$(_tooling_dir)"
stamp_now="$({ cat "$HTTM_ROOT/requirements.txt" "$HTTM_ROOT/setup.py" "$HTTM_ROOT/scripts/install_venv.sh"
  if [ -n "$TOOLING" ]; then cat "$HTTM_ROOT/requirements-ros-tooling.txt"; cd "$TOOLING" && sha256sum wheels/*.whl; fi
  } | sha256sum | cut -d' ' -f1) $TORCH_SPEC${TOOLING:+ +ros-tooling}"
stamp_file="$VENV/.httm_ros_stamp"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_now" ]; then
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  if "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "setup: keeping the installed CUDA torch" >&2
  else
    "${pip[@]}" "$TORCH_SPEC"
  fi
  "${pip[@]}" -r "$HTTM_ROOT/requirements.txt"
  if [ -n "$TOOLING" ]; then
    echo "setup: installing the ROS 2 launch stack from $TOOLING" >&2
    "${pip[@]}" --no-deps "$TOOLING"/wheels/*.whl
    "${pip[@]}" -r "$HTTM_ROOT/requirements-ros-tooling.txt"
  fi
  "${pip[@]}" --no-deps --no-build-isolation -e "$HTTM_ROOT"
  "$VENV/bin/python" "$HTTM_ROOT/scripts/fix_rosidl_exports.py" "$VENV" >&2
  echo "$stamp_now" > "$stamp_file"
fi
echo "$TOOLING" > "$VENV/.httm_ros_tooling"
