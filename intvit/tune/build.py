"""The build step of MetaSchedule candidates, run in its builder's worker processes.

TVM's default build function imports ``tvm.s_tir.tensor_intrin`` first, which parses every
CUDA tensor intrinsic and takes 90 s or more here: longer than the builder's 30 s timeout, so
every candidate failed ("LocalBuilder: Timeout"). The candidates intvit tunes never use TVM's
tensor intrinsics (tensorized kernels are intvit's own and are not tuned), so this is TVM's
default build without that import. Kept in a module of its own that imports only TVM: the
workers import it to unpickle the function.
"""

from __future__ import annotations


def build_candidate(mod, target, _params=None):
    """One candidate ``IRModule`` -> runtime module, as TVM's ``default_build`` does."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)
