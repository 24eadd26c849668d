"""``config/reconstruct.yaml`` from the node's parameter table (one source of truth).

    python -m httm_ros.tools.params_yaml            # print the YAML
    python -m httm_ros.tools.params_yaml --write    # (re)write config/reconstruct.yaml

Every parameter appears with its default and its description, choices or range and whether it
can change at run time, as comments. The parameters are under ``/**`` so the file applies whatever
the node's name and namespace. ``test/test_launch_config.py`` checks that the file equals what
:func:`render` generates.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any, List, Optional, Sequence

from httm_ros.ros.params import PARAMS, Param

CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "reconstruct.yaml"
HEADER = """\
# reconstruct_node parameters: every one with its default. GENERATED from httm_ros/ros/params.py by
#   python -m httm_ros.tools.params_yaml --write
# (do not edit by hand; test/test_launch_config.py checks it). Copy it and pass your copy with
#   ros2 launch httm_ros reconstruct.launch.py params_file:=my.yaml
# or ros2 run httm_ros reconstruct_node --ros-args --params-file my.yaml
# read-only parameters are fixed at start-up; the others can be changed with `ros2 param set`.
"""


def yaml_value(value: Any) -> str:
    """A parameter value as YAML that ROS parses back to the same type (floats keep a '.')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if "." in text and "e" not in text else f"{value:.12f}".rstrip("0")
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _constraint(param: Param) -> str:
    if param.choices is not None:
        return "one of: " + ", ".join(param.choices)
    if param.range is not None:
        lo, hi = (yaml_value(param.type(v)) for v in param.range)
        return f"range [{lo}, {hi}]"
    return ""


def param_lines(param: Param, indent: str = "    ") -> List[str]:
    """Comment lines (description, constraint, read-only) and the ``name: default`` line."""
    notes = [n for n in (_constraint(param), "read-only" if not param.runtime else "changeable at run time") if n]
    text = f"{param.description} ({'; '.join(notes)})"
    comments = textwrap.wrap(text, width=96 - len(indent) - 2)
    return [f"{indent}# {line}" for line in comments] + [f"{indent}{param.name}: {yaml_value(param.default)}"]


def render() -> str:
    """The whole file."""
    lines = [HEADER.rstrip("\n"), "/**:", "  ros__parameters:"]
    for i, param in enumerate(PARAMS):
        if i:
            lines.append("")
        lines += param_lines(param)
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m httm_ros.tools.params_yaml", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {CONFIG_PATH} instead of printing")
    args = parser.parse_args(argv)
    if args.write:
        CONFIG_PATH.write_text(render())
        print(f"wrote {CONFIG_PATH}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
