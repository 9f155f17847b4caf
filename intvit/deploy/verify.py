"""Verifying a library on the machine it runs on, with the TVM runtime and NumPy alone: what a
user runs on a board after copying ``model.so`` and ``model.so.json`` there::

    from intvit.deploy.verify import verify_library
    assert all(verify_library("model.so"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from intvit.deploy.golden import check_golden
from intvit.deploy.manifest import read_manifest


def verify_library(library: str | Path) -> list[bool]:
    """Run ``library``'s golden vectors (from ``library``.json, its manifest) on this
    machine's CPU with the TVM runtime: one bool per vector, True when its output is bit-exact.
    ValueError when the manifest carries no golden vectors (an FP32 build, or one exported
    before intvit stored them)."""
    import tvm
    from tvm import relax

    manifest = read_manifest(library)
    if not manifest.golden:
        raise ValueError(f"{str(library)!r}: its manifest holds no golden vectors")
    lib = tvm.runtime.load_module(str(Path(library).resolve()))
    dev = tvm.cpu()

    def run(image: np.ndarray) -> np.ndarray:
        vm = relax.VirtualMachine(lib, dev)
        return vm["main"](tvm.runtime.tensor(image, dev)).numpy()

    return [ok for _, ok in check_golden(run, manifest)]
