"""Fast path of HTTM: Triton kernels for matching, aggregation, outliers and unmerging, an exact
sort-free top-k, and attention over per-head query lengths. See docs/KERNELS.md.

    from httm_ros.httm.kernels import httm_attention_fast, triton_usable
    o, record = httm_attention_fast(q, k, v, layout, HTTMConfig())

Modules: ``triton_env`` (where the kernels can run, ``resolve_impl``, ``ops()``), ``triton_ops``
(the kernels; imports triton, so only imported when a kernel runs: on a CPU the kernels need
Triton's interpreter, ``TRITON_INTERPRET=1`` before triton is first imported), ``tables``
(``KernelTables``: int32 copies of a ``TileLayout``), ``fast`` (the attention call), ``select``
(sort-free top-k), ``ragged`` (attention over per-head query lengths), ``tune`` (launch
configurations), ``interpreter_compat``.
"""

from .fast import httm_attention_fast
from .triton_env import ops, resolve_impl, triton_usable

__all__ = ["triton_usable", "resolve_impl", "ops", "httm_attention_fast"]
