"""Triton interpreter (CPU) fix: with NumPy >= 2.4, ``int()`` of the 1-element arrays the
interpreter uses for scalars raises, so ``range(0, runtime_int, STEP)`` inside a kernel fails.
Patched here (interpreter only; compiled kernels are not affected)."""

from __future__ import annotations


def patch_interpreter() -> None:
    """Make the interpreter's scalar ``__index__`` use ``.item()`` (idempotent)."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "_httm_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._httm_patched = True
    interpreter._patch_lang_tensor = patched
