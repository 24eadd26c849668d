"""Seeded random byte fuzz of the input decoder, in-process (issue 20): random Image headers and
data, mutated and garbage JPEG/PNG files. Every case ends in a decoded frame of the size the
input declares, or in a clean rejection (ImageDecodeError with a counter key of
codec.DROP_REASONS and a reason that names no memory address); any other exception or a warning
(e.g. Pillow's DecompressionBombWarning on stderr) fails. Budget: 2000 cases in < 10 s of CPU.
"""

import time
import warnings
from collections import Counter

import numpy as np
import pytest

from httm_ros.ros import codec

import fuzz_inputs as F

pytestmark = pytest.mark.fuzz

CASES = 2000
CPU_BUDGET_S = 10.0


def _check_one(msg, limits) -> str:
    """Decode ``msg``; "ok" or the drop reason. Fails the test on anything unclean."""
    declared = F.declared_size(msg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rgb = codec.decode_any(msg, limits)
        except codec.ImageDecodeError as err:
            reason, text = err.reason, str(err)
            assert reason in codec.DROP_REASONS, (reason, text)
            assert text and text.isprintable() and not F.ADDRESS.search(text), text
            outcome = reason
        else:
            assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8, type(rgb)
            assert rgb.shape == (*declared, 3), (rgb.shape, declared)
            outcome = "ok"
    assert not caught, [str(w.message) for w in caught]
    return outcome


def test_random_inputs_decode_to_their_size_or_are_refused_with_a_counted_reason():
    rng = np.random.default_rng(2020)
    seeds = F.seed_images(rng)
    limits = codec.InputLimits()                     # the node's default bounds
    outcomes = Counter()
    t0 = time.process_time()
    for i in range(CASES):
        msg = F.random_image(rng) if i % 2 else F.random_compressed(rng, seeds)
        try:
            outcomes[_check_one(msg, limits)] += 1
        except AssertionError as err:
            raise AssertionError(f"case {i} ({type(msg).__name__}, encoding/format "
                                 f"{getattr(msg, 'encoding', getattr(msg, 'format', ''))!r}): {err}") from None
    cpu = time.process_time() - t0
    assert cpu < CPU_BUDGET_S, f"{CASES} cases took {cpu:.1f} s of CPU"
    # The generator reaches both outcomes and most reasons (a fuzz that only ever hits one
    # branch tests nothing).
    assert outcomes["ok"] > 100, outcomes
    reached = set(outcomes) - {"ok"}
    assert {"unsupported_encoding", "empty", "bad_step", "truncated", "undecodable",
            "too_many_pixels"} <= reached, outcomes


@pytest.mark.parametrize("kind", ["raw", "compressed"])
def test_every_hostile_case_gets_its_outcome(kind):
    """The fixed hostile sets of fuzz_inputs, decoded directly: the node-level tests rely on
    these outcomes."""
    rgb = np.random.default_rng(1).integers(0, 256, (84, 112, 3), dtype=np.uint8)
    cases = F.raw_cases(rgb) if kind == "raw" else F.compressed_cases(rgb)
    limits = codec.InputLimits()
    got = {case.name: _check_one(case.msg, limits) for case in cases}
    wrong = {c.name: (c.expect, got[c.name]) for c in cases if c.expect not in ("any", got[c.name])}
    assert not wrong, wrong


def test_a_png_bomb_is_refused_from_its_header_without_decoding():
    bomb = F.compressed(0, F.png_bomb(9500), "png")
    assert len(bomb.data) < 200_000                          # tiny compressed, 90 Mpx decoded
    t0 = time.process_time()
    with pytest.raises(codec.ImageDecodeError, match="9500x9500") as err:
        codec.decode_any(bomb, codec.InputLimits())
    assert err.value.reason == "too_many_pixels"
    assert time.process_time() - t0 < 0.05                   # nothing was decompressed
