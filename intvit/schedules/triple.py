"""What a target dict's triple says: the one reading of ``mtriple`` every layer uses."""

from __future__ import annotations

#: The architectures of ARM's 64-bit triples (Linux's and Apple's spelling).
ARM64 = ("aarch64", "arm64")


def arch_of_target(target: dict) -> str:
    """The architecture a target dict compiles for: its triple's first part (``aarch64``,
    ``arm64``, ``x86_64``, ...), or this machine's without a triple."""
    triple = str(target.get("mtriple", ""))
    if triple:
        return triple.split("-")[0]
    import platform

    return platform.machine()


def is_arm64(target: dict) -> bool:
    return arch_of_target(target) in ARM64


def is_x86_64(target: dict) -> bool:
    return arch_of_target(target) == "x86_64"
