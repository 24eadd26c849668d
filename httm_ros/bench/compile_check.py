"""Compile the HTTM Triton kernels for the H100 (sm_90) on any machine, no GPU needed, and read
the compiler's resource report: registers, spills, 16-byte loads, wgmma (HGMMA) instructions.

    httm-bench compile-check               # table of the production variants
    httm-bench compile-check --candidates  # every tuner candidate (kernels/tune.py)

Compiled with the launch-time specialisation the kernels get on the GPU (pointers and token
strides divisible by 16, which is what makes the row gathers 16-byte vector loads). Needs
triton with its bundled ptxas/cuobjdump, and TRITON_INTERPRET unset.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

BF, F32, I32 = "*bf16", "*fp32", "*i32"
STRIDES = {"sxb", "sxh", "sxn", "syb", "syh", "syn", "sob", "soh", "som"}
_MATCH = {"x_ptr": BF, "tok_ptr": I32, "n_dst_ptr": I32, "n_src_ptr": I32, "score_ptr": F32, "group_ptr": I32,
          "assign_ptr": I32, "gc_ptr": I32}
_AGG = {"x_ptr": BF, "y_ptr": BF, "tok_ptr": I32, "n_dst_ptr": I32, "n_src_ptr": I32, "n_unm_ptr": I32,
        "group_ptr": I32, "gc_ptr": I32, "cnt_ptr": F32}


def variants():
    """(kernel name, pointer types, constexprs, num_warps, uses tl.dot) as launched in production
    (bf16 q/k/v of VGGT, head dim 64; launchers' defaults in triton_ops), plus one tuner candidate
    of the K+V aggregation."""
    d = dict(DH=64, BLOCK_DH=64)
    return [
        ("_match_kernel", _MATCH, dict(d, BLOCK_S=128, BLOCK_D=64, WRITE_ASSIGN=True, IEEE=False), 8, True),
        ("_match_kernel", _MATCH, dict(d, BLOCK_S=128, BLOCK_D=64, WRITE_ASSIGN=False, IEEE=False), 8, True),
        ("_aggregate_kernel", {**_AGG, "out_x_ptr": F32, "out_y_ptr": F32},
         dict(d, BLOCK_G=128, BLOCK_S=32, HAS_Y=False, MEAN=False, IEEE=False), 8, True),
        ("_aggregate_kernel", {**_AGG, "out_x_ptr": BF, "out_y_ptr": BF},
         dict(d, BLOCK_G=128, BLOCK_S=32, HAS_Y=True, MEAN=True, IEEE=False), 8, True),
        # a tuner candidate (kernels/tune.py) for the K+V aggregation: 64-group tiles, 4 warps
        ("_aggregate_kernel", {**_AGG, "out_x_ptr": BF, "out_y_ptr": BF},
         dict(d, BLOCK_G=64, BLOCK_S=32, HAS_Y=True, MEAN=True, IEEE=False), 4, True),
        ("_deviation_kernel", {"x_ptr": BF, "assign_ptr": I32, "sums_ptr": F32, "cnt_ptr": F32, "dev_ptr": F32},
         dict(d, BLOCK_N=128), 8, False),
        ("_outlier_kernel", {"x_ptr": BF, "assign_ptr": I32, "pos_ptr": I32, "sums_ptr": F32, "cnt_ptr": F32,
                             "out_ptr": BF, "new_assign_ptr": I32}, dict(d, BLOCK_N=64), 8, False),
        ("_means_kernel", {"sums_ptr": F32, "cnt_ptr": F32, "out_ptr": BF}, dict(d, BLOCK_M=128), 8, False),
        ("_unmerge_kernel", {"o_ptr": BF, "assign_ptr": I32, "out_ptr": BF}, dict(d, BLOCK_N=128), 8, False),
    ]


def compile_report(name: str, types: Dict, constexprs: Dict, num_warps: int,
                   num_stages: Optional[int] = None) -> Dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from httm_ros.httm.kernels import triton_ops

    kernel = getattr(triton_ops, name)
    names = kernel.arg_names
    sig = {n: ("constexpr" if n in constexprs else types.get(n, "i32")) for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n not in constexprs and (sig[n].startswith("*") or n in STRIDES)}
    src = ASTSource(kernel, sig, constexprs={(names.index(k),): v for k, v in constexprs.items()}, attrs=attrs)
    options = {"num_warps": num_warps, **({} if num_stages is None else {"num_stages": num_stages})}
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        with open(ptx, "w") as f:
            f.write(k.asm["ptx"])
        err = subprocess.run([os.path.join(tools, "ptxas"), "-arch=sm_90a", "-v", ptx, "-o",
                              os.path.join(tmp, "p.cubin")], capture_output=True, text=True).stderr
        cubin = os.path.join(tmp, "k.cubin")
        with open(cubin, "wb") as f:
            f.write(k.asm["cubin"])
        sass = subprocess.run([os.path.join(tools, "cuobjdump"), "-sass", cubin], capture_output=True,
                              text=True).stdout
    return {
        "kernel": name, "num_warps": num_warps, "num_stages": num_stages,
        "blocks": {a: b for a, b in constexprs.items() if a.startswith("BLOCK_") and a != "BLOCK_DH"},
        "registers": int(re.search(r"Used (\d+) registers", err).group(1)),
        "spill_bytes": int(re.search(r"(\d+) bytes spill stores", err).group(1)),
        "vector_loads": len(re.findall(r"ld\.global(?:\.[a-z]+)*\.v4", k.asm["ptx"])) + len(re.findall("cp.async", k.asm["ptx"])),
        "scalar_b16_loads": len(re.findall(r"ld\.global(?:\.[a-z]+)*\.b16", k.asm["ptx"])),
        "hgmma": len(re.findall("HGMMA", sass)),
        "shared_bytes": k.metadata.shared,
    }


def check() -> List[Dict]:
    return [{**compile_report(n, t, c, w), "uses_dot": dot} for n, t, c, w, dot in variants()]


def candidate_reports() -> List[Dict]:
    """Every launch configuration of ``kernels.tune.CANDIDATES`` for the production variants of
    the matching (writes assign) and the aggregation (Q sums, K+V means)."""
    from httm_ros.httm.kernels.tune import CANDIDATES

    d = dict(DH=64, BLOCK_DH=64)
    kinds = [
        ("match", "_match_kernel", _MATCH, dict(d, WRITE_ASSIGN=True, IEEE=False)),
        ("aggregate", "_aggregate_kernel", {**_AGG, "out_x_ptr": F32, "out_y_ptr": F32},
         dict(d, HAS_Y=False, MEAN=False, IEEE=False)),
        ("aggregate", "_aggregate_kernel", {**_AGG, "out_x_ptr": BF, "out_y_ptr": BF},
         dict(d, HAS_Y=True, MEAN=True, IEEE=False)),
    ]
    names = {"block_s": "BLOCK_S", "block_d": "BLOCK_D", "block_g": "BLOCK_G"}
    out = []
    for op, kernel, types, fixed in kinds:
        for cfg in CANDIDATES[op]:
            blocks = {names[k]: v for k, v in cfg.items() if k in names}
            rep = compile_report(kernel, types, {**fixed, **blocks}, cfg["num_warps"], cfg.get("num_stages"))
            out.append({**rep, "variant": {k: v for k, v in fixed.items() if k in ("WRITE_ASSIGN", "HAS_Y")}})
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--candidates", action="store_true", help="every tuner candidate (kernels/tune.py)")


def run(args, argv: List[str]) -> int:
    """``httm-bench compile-check``: a table of the compiled kernels' resources."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("unset TRITON_INTERPRET: this compiles the kernels for sm_90", file=sys.stderr)
        return 2
    if args.candidates:
        print(f"{'kernel':18s} {'warps':>5s} {'stages':>6s} {'regs':>5s} {'spill':>5s} {'hgmma':>5s} {'smem':>6s}  blocks / variant")
        for r in candidate_reports():
            st = "-" if r["num_stages"] is None else str(r["num_stages"])
            print(f"{r['kernel']:18s} {r['num_warps']:5d} {st:>6s} {r['registers']:5d} {r['spill_bytes']:5d} "
                  f"{r['hgmma']:5d} {r['shared_bytes']:6d}  {r['blocks']} {r['variant']}")
        return 0
    print(f"{'kernel':18s} {'warps':>5s} {'regs':>5s} {'spill':>5s} {'vec':>4s} {'b16':>4s} {'hgmma':>5s} {'smem':>6s}  blocks")
    for r in check():
        print(f"{r['kernel']:18s} {r['num_warps']:5d} {r['registers']:5d} {r['spill_bytes']:5d} {r['vector_loads']:4d} "
              f"{r['scalar_b16_loads']:4d} {r['hgmma']:5d} {r['shared_bytes']:6d}  {r['blocks']}")
    return 0
