"""Run an exported intvit library with nothing but ``tvm`` and ``numpy``.

    from intvit.deploy.runner import load, run
    vm = load("model.so")
    logits_acc = run(vm, int8_image)   # [B, heads_out, classes] int32

This module imports no other part of intvit, and no torch.
"""

from __future__ import annotations

import platform

import numpy as np
import tvm


def load(path: str, device: str = "cpu"):
    """Load a library built for this machine; a library for another architecture is refused."""
    try:
        lib = tvm.runtime.load_module(str(path))
    except Exception as err:
        raise ValueError(
            f"cannot load {path!r} on this {platform.machine()} machine (built for another "
            f"architecture, or not a TVM library): {str(err).splitlines()[0]}"
        ) from None
    return tvm.relax.VirtualMachine(lib, tvm.device(device))


def run(vm, image: np.ndarray) -> np.ndarray:
    """int8 image ``[B, C, H, W]`` -> int32 logit accumulators."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.int8:
        raise ValueError(f"image must be int8 (quantized), got {image.dtype}")
    return vm["main"](tvm.runtime.tensor(image)).numpy()
