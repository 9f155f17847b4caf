"""The LLVM tools the analysis runs (Debian's llvm-19: llvm-mc, llvm-mca, llvm-nm), found in
one place."""

from __future__ import annotations

import shutil

#: The LLVM whose tools (``<name>-19``) the analysis calls; its core models are the ones named
#: in every modelled figure.
LLVM_VERSION = 19


def find_llvm_tool(name: str, error: type[Exception] = RuntimeError) -> str:
    """The path of ``<name>-<LLVM_VERSION>`` (``llvm-mca`` -> ``llvm-mca-19``); ``error`` with
    how to get it when it is missing."""
    tool = f"{name}-{LLVM_VERSION}"
    path = shutil.which(tool)
    if path is None:
        raise error(f"{tool} is missing: install Debian's llvm-{LLVM_VERSION} (make system-deps)")
    return path
