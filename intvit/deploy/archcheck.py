"""Which CPU architecture a library was built for, read from its file header (ELF, Mach-O,
or the objects inside an exported ``.tar``), so a library for the wrong architecture is
refused before it is uploaded to a device.
"""

from __future__ import annotations

import struct
import tarfile
from pathlib import Path

#: ELF e_machine values -> the architecture names used by triples.
_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x28: "arm", 0x03: "i386", 0xF3: "riscv"}
#: Mach-O cputype values.
_MACHO_CPUS = {0x01000007: "x86_64", 0x0100000C: "arm64"}
#: Names that mean the same architecture.
_SAME = {"arm64": "aarch64", "amd64": "x86_64"}


def normalize_arch(arch: str) -> str:
    return _SAME.get(arch.lower(), arch.lower())


def _arch_of_bytes(head: bytes) -> str | None:
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        endian = "<" if head[5] == 1 else ">"
        (machine,) = struct.unpack(endian + "H", head[18:20])
        return _ELF_MACHINES.get(machine, f"elf-machine-{machine:#x}")
    if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") and len(head) >= 8:
        (cpu,) = struct.unpack("<I", head[4:8])
        return _MACHO_CPUS.get(cpu, f"macho-cpu-{cpu:#x}")
    return None


def arch_of_header(head: bytes) -> str | None:
    """The architecture in an ELF or Mach-O header (the first 64 bytes of a file)."""
    arch = _arch_of_bytes(head)
    return normalize_arch(arch) if arch else None


def library_arch(path: str | Path) -> str:
    """The architecture of a ``.so``/``.dylib``/``.o`` or of the objects in a ``.tar``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"library {str(path)!r} does not exist")
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member) if member.isfile() else None
                arch = _arch_of_bytes(f.read(64)) if f else None
                if arch:
                    return normalize_arch(arch)
        raise ValueError(f"{str(path)!r} holds no object file with a known architecture")
    arch = _arch_of_bytes(path.read_bytes()[:64])
    if arch is None:
        raise ValueError(f"{str(path)!r} is not a shared library (no ELF or Mach-O header)")
    return normalize_arch(arch)


def check_library_arch(path: str | Path, device_arch: str, device: str) -> None:
    """ValueError if ``path`` was not built for ``device_arch`` (checked before upload)."""
    built_for = library_arch(path)
    if built_for != normalize_arch(device_arch):
        raise ValueError(
            f"library {Path(path).name!r} is built for {built_for}, but device {device!r} is "
            f"{normalize_arch(device_arch)}: compile it for that device's target"
        )
