"""Import TVM's tensor intrinsics (``tvm.s_tir.tensor_intrin``) in seconds, not minutes.

MetaSchedule's ``TuneContext`` imports that package for its auto-tensorization rules. It
parses several hundred TVMScript functions, and TVMScript calls ``inspect.stack()`` for each,
which reads source context for every frame through ``inspect.getmodule``: a scan of all of
``sys.modules`` per frame, 90 s without torch loaded and over 200 s with it, here. Asking
``inspect`` for frames without source context (``context=0``) gives the parser everything it
uses from them (frames, their locals and globals; source context only matters for functions
defined inside ``@I.ir_module`` classes, which the package does not have): ~15 s.
"""

from __future__ import annotations

import contextlib
import inspect
import sys


@contextlib.contextmanager
def _frames_without_source():
    stack, outer = inspect.stack, inspect.getouterframes
    inspect.stack = lambda context=1: stack(0)
    inspect.getouterframes = lambda frame, context=1: outer(frame, 0)
    try:
        yield
    finally:
        inspect.stack, inspect.getouterframes = stack, outer


def import_tvm_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` once per process, fast."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    with _frames_without_source():
        import tvm.s_tir.tensor_intrin  # noqa: F401
