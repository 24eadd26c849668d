"""Configuration of token merging in VGGT's global attention: HTTM and the uniform baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

IMPLS = ("auto", "triton", "torch")
ATTENTION_SDPA = ("flash", "cudnn")


def _check_fraction(owner: str, name: str, value, low_open: bool = False, high_open: bool = False) -> None:
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        raise ValueError(f"{owner}.{name} must be in {lo}0, 1{hi}, got {value!r}")


def _check_positive_int(owner: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name} must be an int >= 1, got {value!r}")


def _check_bools(owner: str, config, names) -> None:
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{owner}.{name} must be a bool, got {getattr(config, name)!r}")


def _normalise_layers(owner: str, layers) -> Optional[Tuple[int, ...]]:
    if layers is None:
        return None
    try:
        out = tuple(layers)
    except TypeError:
        raise ValueError(f"{owner}.layers must be None or a sequence of ints >= 0, got {layers!r}") from None
    if not out or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in out):
        raise ValueError(f"{owner}.layers must be None or a non-empty sequence of ints >= 0, got {layers!r}")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class HTTMConfig:
    """Head-wise Temporal Token Merging (arXiv 2511.21317); defaults are the paper's (Sec. 4.1).

    q_merge            fraction of each tile's query tokens merged away first (paper 0.9)
    q_outlier          fraction of mergeable query tokens (over all heads) restored as outliers
                       (paper 0.1): queries kept = 1 - q_merge + q_outlier = 20%
    kv_merge           fraction of each tile's key/value tokens merged away (paper 0.7: 30% kept)
    spatial_block      n_s: most raster-order patch positions in one merging tile (paper 128)
    temporal_frames    n_t: most consecutive frames in one merging tile (paper 30)
    anchor_first_frame every first-frame patch token is a destination, never a source (paper on)
    layers             global-attention block indices to merge in; None = all of them
    dst_ratio          share of a tile's kept slots that are destinations (ours; the rest of
                       the kept slots go to the least similar sources, which stay unmerged).
                       1.0 (all sources merged) had the lowest error on the fidelity proxy
    proportional_attention  add log(size) of each merged key to the attention logits (ToMe's
                       proportional attention; not in the paper, off by default)
    tile_elements      most similarity entries held at once during matching (bounds memory)
    impl               which implementation merges: "auto" (the Triton kernels of ``kernels/`` on
                       CUDA, torch elsewhere; a call whose kernels fail runs on the torch
                       reference instead, reported in its record and counted in the stats),
                       "triton" (the kernels or an error; on CPU only under TRITON_INTERPRET=1)
                       or "torch" (the reference in ``merge.py``)
    attention_sdpa     SDPA kernels of the Triton path's attention over per-head query lengths
                       (CUDA): "flash" (flash, or memory-efficient with a bias: kernels that are
                       not built per shape, so a new outlier count costs nothing extra) or
                       "cudnn" (cuDNN first: ~25% more attention FLOP/s, but an execution plan
                       is built, seconds, for every new query-row count; ``vggt.layers.sdpa``)
    profile            time each stage in the stats (synchronises CUDA; CPU is always timed)
    """

    q_merge: float = 0.9
    q_outlier: float = 0.1
    kv_merge: float = 0.7
    spatial_block: int = 128
    temporal_frames: int = 30
    anchor_first_frame: bool = True
    layers: Optional[Tuple[int, ...]] = None
    dst_ratio: float = 1.0
    proportional_attention: bool = False
    tile_elements: int = 1 << 28
    impl: str = "auto"
    attention_sdpa: str = "flash"
    profile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _normalise_layers("HTTMConfig", self.layers))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and its allowed range."""
        _check_fraction("HTTMConfig", "q_merge", self.q_merge, high_open=True)
        _check_fraction("HTTMConfig", "kv_merge", self.kv_merge, high_open=True)
        _check_fraction("HTTMConfig", "q_outlier", self.q_outlier)
        if self.q_outlier > self.q_merge:
            raise ValueError(f"HTTMConfig.q_outlier must be in [0, q_merge={self.q_merge}] "
                             f"(only merged queries can be restored), got {self.q_outlier!r}")
        _check_fraction("HTTMConfig", "dst_ratio", self.dst_ratio, low_open=True)
        for name in ("spatial_block", "temporal_frames", "tile_elements"):
            _check_positive_int("HTTMConfig", name, getattr(self, name))
        _check_bools("HTTMConfig", self, ("anchor_first_frame", "proportional_attention", "profile"))
        if self.impl not in IMPLS:
            raise ValueError(f"HTTMConfig.impl must be one of {IMPLS}, got {self.impl!r}")
        if self.attention_sdpa not in ATTENTION_SDPA:
            raise ValueError(f"HTTMConfig.attention_sdpa must be one of {ATTENTION_SDPA}, "
                             f"got {self.attention_sdpa!r}")

    @property
    def q_kept(self) -> float:
        """Nominal fraction of query tokens kept per head on average."""
        return 1.0 - self.q_merge + self.q_outlier

    @property
    def kv_kept(self) -> float:
        return 1.0 - self.kv_merge


@dataclass(frozen=True)
class UniformMergeConfig:
    """FastVGGT's token merging (arXiv 2509.02560, its released code): one bipartite matching per
    call, on the attention input x, shared by all heads and by Q, K and V (``uniform.py``).

    merge_ratio        r = int(merge_ratio * N) sources merge per call, N = all tokens of the call
                       (FastVGGT's convention), at most the unprotected sources; FastVGGT's 0.9
                       merges every unprotected source (~35% of the tokens kept at 518x392)
    protect_ratio      int(protect_ratio * N) tokens at an even stride over the sequence are never
                       merged (FastVGGT: 10%); 0 protects none
    seed               seed of the generator (on the call's device) that picks one destination per
                       2x2 cell of every frame after the first (FastVGGT: 33, the same draw in
                       every layer and call)
    anchor_first_frame every first-frame token is a destination (FastVGGT always does this); off:
                       the first frame is drawn like the others
    proportional_attention  as in HTTMConfig (FastVGGT does not use it; off by default)
    layers             global-attention block indices to merge in; None = all of them (FastVGGT)
    tile_elements      most similarity entries held at once during the matching; None = FastVGGT's
                       chunks of 5000 sources against all destinations
    profile            as in HTTMConfig
    """

    merge_ratio: float = 0.9
    protect_ratio: float = 0.1
    seed: int = 33
    anchor_first_frame: bool = True
    proportional_attention: bool = False
    layers: Optional[Tuple[int, ...]] = None
    tile_elements: Optional[int] = None
    profile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _normalise_layers("UniformMergeConfig", self.layers))
        self.validate()

    def validate(self) -> None:
        _check_fraction("UniformMergeConfig", "merge_ratio", self.merge_ratio)
        _check_fraction("UniformMergeConfig", "protect_ratio", self.protect_ratio)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"UniformMergeConfig.seed must be an int >= 0, got {self.seed!r}")
        if self.tile_elements is not None:
            _check_positive_int("UniformMergeConfig", "tile_elements", self.tile_elements)
        _check_bools("UniformMergeConfig", self, ("anchor_first_frame", "proportional_attention", "profile"))
