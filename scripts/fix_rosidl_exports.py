"""Repoint the ROS 2 wheels' rosidl CMake exports at this interpreter's headers.

The PyPI wheels of ROS 2 interface packages ship `export_*__rosidl_generator_pyExport.cmake` files
that hard-code the wheel builder's include paths (/opt/python/cp3XX-cp3XX/...). Generating our own
messages with rosidl then fails to find Python.h and the NumPy headers. This rewrites those paths
to `sysconfig.get_paths()['include']` and `numpy.get_include()`. Idempotent.

Usage: python scripts/fix_rosidl_exports.py PREFIX   (PREFIX = the virtualenv root)
"""

import pathlib
import re
import sys
import sysconfig

import numpy

BUILDER_NUMPY = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_?core/)?include")
BUILDER_PYTHON = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")


def fix_file(path: pathlib.Path) -> bool:
    text = path.read_text()
    new = BUILDER_NUMPY.sub(numpy.get_include(), text)
    new = BUILDER_PYTHON.sub(sysconfig.get_paths()["include"], new)
    if new == text:
        return False
    path.write_text(new)
    return True


def main(prefix: str) -> int:
    files = sorted(pathlib.Path(prefix, "share").glob("*/cmake/*rosidl_generator_py*.cmake"))
    changed = [f for f in files if fix_file(f)]
    leftover = [f for f in files if "/opt/python/" in f.read_text()]
    if leftover:
        print(f"fix_rosidl_exports: unexpected builder paths remain in {leftover[:3]}", file=sys.stderr)
        return 1
    print(f"fix_rosidl_exports: {len(changed)} of {len(files)} rosidl export files rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
