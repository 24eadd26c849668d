"""What the demo prints: progress lines, the final report and verdicts on the window counts."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..run_summary import format_summary


def log(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def verdict_lines(summary: dict) -> List[str]:
    """What a person should make of the window counts (and of a node that did not exit cleanly)."""
    lines = []
    if summary["windows"] == 0:
        lines.append("No window ran: too few keyframes for one window (see summary.json).")
    elif summary["windows_accepted"] == 0:
        lines.append("No window was accepted, so the map is empty (reasons in the table above).")
    elif summary["windows_accepted"] == 1 and summary["windows"] > 1:
        lines.append("Only the first window (which defines the world) was accepted: "
                     + ("with test weights the windows do not agree on their overlap, as expected."
                        if summary["test_weights"] else "later windows did not align (reasons above)."))
    if summary.get("node_exit_status") not in (0, None):
        lines.append(f"WARNING: reconstruct_node exited with status {summary['node_exit_status']} (see node.log).")
    return lines


def print_report(out: Path, summary: dict) -> None:
    """The summary table, the verdicts and where the outputs are."""
    print()
    lines = format_summary(summary)
    if "accuracy" in summary:
        lines.append(accuracy_line(summary["accuracy"]))
    for line in lines + verdict_lines(summary):
        print("  " + line)
    if summary["test_weights"]:
        print("  NOTE: deterministic TEST WEIGHTS: every stage ran, but the geometry is MEANINGLESS.")
    print(f"  demo took {summary['demo_wall_s']:.0f} s; outputs in {out}/:")
    for key, path in summary["outputs"].items():
        print(f"    {key:<10} {path}")
    print(f"  open the preview: {summary['outputs']['preview']}")


def accuracy_line(acc: Optional[dict]) -> str:
    """One line for the report and the preview."""
    if not acc:
        return "accuracy vs ground truth: - (fewer than 3 keyframes in the published path)"
    text = (f"accuracy vs ground truth (Sim(3)-aligned on {acc['keyframes']} keyframe cameras): ATE "
            f"{acc['ate_percent']:.1f} % of the {acc['path_length_m']:.2f} m path ({100 * acc['ate_rmse_m']:.1f} cm)")
    if acc.get("map_points_measured"):
        text += (f"; map points to the true surfaces: median {100 * acc['map_median_m']:.1f} cm, "
                 f"p90 {100 * acc['map_p90_m']:.1f} cm (room diagonal {acc['scene_size_m']:.1f} m)")
    return text
