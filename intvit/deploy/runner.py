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
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    from intvit.deploy.archcheck import library_arch, normalize_arch

    here = normalize_arch(platform.machine())
    built_for = library_arch(path)  # ValueError for a missing file or no ELF/Mach-O header
    if built_for != here:
        raise ValueError(
            f"{str(path)!r} is built for {built_for}; this machine is {here}: run it there, "
            "or compile it for this machine's target"
        )
    try:
        lib = tvm.runtime.load_module(str(path))
    except (RuntimeError, OSError) as err:  # TVM errors are RuntimeErrors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load {str(path)!r} as a TVM library: {first}") from None
    return tvm.relax.VirtualMachine(lib, tvm.device(device))


def run(vm, image: np.ndarray) -> np.ndarray:
    """int8 image ``[B, C, H, W]`` -> int32 logit accumulators."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.int8:
        raise ValueError(f"image must be int8 (quantized), got {image.dtype}")
    return vm["main"](tvm.runtime.tensor(image)).numpy()
