"""The manifest written beside every exported library (``model.so`` -> ``model.so.json``).

It records what a benchmark or a user needs without the compiler: the target preset and its
architecture, the input the library's ``main`` takes, what model it holds, and the kernel
calls of ``main`` in order (function name and argument shapes/dtypes), which is how a
per-operator profile times each kernel on a device.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class KernelCall:
    """One call of a compiled TIR function from the VM's ``main``: arguments, outputs last."""

    func: str
    args: tuple[tuple[tuple[int, ...], str], ...]  # ((shape, dtype), ...)


@dataclass
class LibraryManifest:
    """What an exported library holds. ``kind``: ``int`` (integer-only) or ``fp32``."""

    preset: str
    target: dict
    arch: str  # x86_64 / aarch64 / arm64
    input_shape: tuple[int, ...]
    input_dtype: str
    kind: str
    model: str
    calls: list[KernelCall] = field(default_factory=list)
    kernels_library: str | None = None  # file name beside the library, for per-op timing
    version: int = MANIFEST_VERSION
    #: bytes per inference (:class:`intvit.deploy.memory.MemoryReport` as a dict)
    memory: dict | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> LibraryManifest:
        calls = [
            KernelCall(c["func"], tuple((tuple(s), dt) for s, dt in c["args"]))
            for c in d.get("calls", [])
        ]
        return cls(
            d["preset"],
            d["target"],
            d["arch"],
            tuple(d["input_shape"]),
            d["input_dtype"],
            d["kind"],
            d["model"],
            calls,
            d.get("kernels_library"),
            d.get("version", MANIFEST_VERSION),
            d.get("memory"),
        )


def manifest_path(library: str | Path) -> Path:
    library = Path(library)
    return library.with_name(library.name + ".json")


def write_manifest(library: str | Path, manifest: LibraryManifest) -> Path:
    path = manifest_path(library)
    path.write_text(manifest.to_json() + "\n")
    return path


def read_manifest(library: str | Path) -> LibraryManifest:
    """The manifest of ``library``; ValueError naming the file when missing or unreadable."""
    path = manifest_path(library)
    if not path.is_file():
        raise ValueError(
            f"{str(library)!r} has no manifest ({path.name}); export it with intvit compile"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("version", 0) > MANIFEST_VERSION:
            raise ValueError(f"manifest version {data['version']} is newer than this intvit")
        return LibraryManifest.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"manifest {str(path)!r} is corrupt: {err!r}") from None


def arch_of_target(target: dict) -> str:
    triple = target.get("mtriple", "")
    if triple.startswith("arm64"):
        return "arm64"
    if triple.startswith("aarch64"):
        return "aarch64"
    if triple:
        return triple.split("-")[0]
    import platform

    return platform.machine()
