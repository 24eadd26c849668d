"""Command-line options for token merging (used by ``httm-reconstruct`` and ``httm-eval``)."""

from __future__ import annotations

import argparse
from typing import List, Optional, Union

from .settings import HTTMConfig, UniformMergeConfig

MERGE_MODES = ("none", "uniform", "httm")


def parse_layers(text: str) -> Optional[List[int]]:
    """"all" -> None; "0,4-7,23" -> [0, 4, 5, 6, 7, 23]."""
    if text.strip().lower() == "all":
        return None
    out: List[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--merge-layers: expected 'all' or e.g. '0,4-23', got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"--merge-layers: no layer in {text!r}")
    return out


def add_merge_arguments(parser: argparse.ArgumentParser, default: str = "httm") -> argparse.ArgumentParser:
    """Add ``--merge none|uniform|httm`` and its knobs (defaults: the paper's) to ``parser``."""
    d, u = HTTMConfig(), UniformMergeConfig()
    g = parser.add_argument_group("token merging (global attention)")
    g.add_argument("--merge", choices=MERGE_MODES, default=default,
                   help=f"none = dense attention; uniform = FastVGGT-style baseline; httm = HTTM (default {default})")
    g.add_argument("--q-merge", type=float, default=d.q_merge,
                   help=f"HTTM: fraction of query tokens merged per block (default {d.q_merge})")
    g.add_argument("--q-outlier", type=float, default=d.q_outlier,
                   help=f"HTTM: fraction of query tokens restored as outliers, over all heads (default {d.q_outlier})")
    g.add_argument("--kv-merge", type=float, default=d.kv_merge,
                   help=f"HTTM: fraction of key/value tokens merged per block (default {d.kv_merge})")
    g.add_argument("--spatial-block", type=int, default=d.spatial_block,
                   help=f"HTTM: n_s, most patch positions per merging block (default {d.spatial_block})")
    g.add_argument("--temporal-frames", type=int, default=d.temporal_frames,
                   help=f"HTTM: n_t, most consecutive frames per merging block (default {d.temporal_frames})")
    g.add_argument("--no-anchor", action="store_true",
                   help="do not make every first-frame token a destination (HTTM and uniform)")
    g.add_argument("--merge-layers", type=parse_layers, default=None, metavar="all|LIST",
                   help="global blocks to merge in, e.g. '0-23' or '4,8-23' (default all)")
    g.add_argument("--uniform-ratio", type=float, default=u.merge_ratio,
                   help=f"uniform (FastVGGT): int(ratio * all tokens) sources merge, at most the unprotected ones "
                        f"(default {u.merge_ratio}: ~35%% kept at 518x392)")
    g.add_argument("--proportional-attention", action="store_true",
                   help="weight each merged key by its size (log-size logit bias; not in the paper)")
    g.add_argument("--merge-profile", action="store_true",
                   help="time each merging stage (synchronises the GPU)")
    return parser


def merge_config_from_args(args: argparse.Namespace) -> Union[HTTMConfig, UniformMergeConfig, None]:
    """The merge configuration selected by ``add_merge_arguments``'s options (ValueError if bad)."""
    if args.merge == "none":
        return None
    anchor = not args.no_anchor
    if args.merge == "uniform":
        return UniformMergeConfig(merge_ratio=args.uniform_ratio, anchor_first_frame=anchor,
                                  proportional_attention=args.proportional_attention,
                                  layers=args.merge_layers, profile=args.merge_profile)
    if args.merge == "httm":
        return HTTMConfig(q_merge=args.q_merge, q_outlier=args.q_outlier, kv_merge=args.kv_merge,
                          spatial_block=args.spatial_block, temporal_frames=args.temporal_frames,
                          anchor_first_frame=anchor, proportional_attention=args.proportional_attention,
                          layers=args.merge_layers, profile=args.merge_profile)
    raise ValueError(f"--merge must be one of {MERGE_MODES}, got {args.merge!r}")
