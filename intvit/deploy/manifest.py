"""The manifest written beside every exported library (``model.so`` -> ``model.so.json``).

It records what a benchmark or a user needs without the compiler: the target preset and its
architecture, the input the library's ``main`` takes, what model it holds, and the kernel
calls of ``main`` in order (function name and argument shapes/dtypes), which is how a
per-operator profile times each kernel on a device; for an integer library, its golden
vectors (:mod:`intvit.deploy.golden`), the reference forward's exact outputs for a few named
inputs, with which the library proves what it computes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from intvit.deploy.golden import GoldenVector
from intvit.paths import atomic_output

if TYPE_CHECKING:
    from intvit.deploy.memory import MemoryReport

MANIFEST_VERSION = 1
#: Input dtypes a library's ``main`` can take (int8 images; FP32 builds take float32).
INPUT_DTYPES = ("int8", "uint8", "float32")
KINDS = ("int", "fp32")


@dataclass(frozen=True)
class KernelCall:
    """One call of a compiled TIR function from the VM's ``main``: arguments, outputs last."""

    func: str
    args: tuple[tuple[tuple[int, ...], str], ...]  # ((shape, dtype), ...)
    #: the kernel's ``intvit.kernel`` kind (:mod:`intvit.topi.kinds`); None for TVM's own
    kind: str | None = None


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
    #: bytes per inference
    memory: MemoryReport | None = None
    #: inputs and their exact outputs (integer libraries; empty for FP32 ones)
    golden: list[GoldenVector] = field(default_factory=list)
    #: the model family (``vit``, ``swin``) of an integer library; None when not recorded
    family: str | None = None

    def __post_init__(self) -> None:
        if self.input_dtype not in INPUT_DTYPES:
            raise ValueError(
                f"input_dtype {self.input_dtype!r} is not one of {', '.join(INPUT_DTYPES)}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        shape = self.input_shape
        if not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise ValueError(f"input_shape {list(shape)} must be positive integers")

    def to_json(self) -> str:
        body = asdict(self)
        body["golden"] = [g.as_dict() for g in self.golden]
        return json.dumps(body, indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> LibraryManifest:
        from intvit.deploy.memory import MemoryReport  # imports TVM: only when read

        calls = [
            KernelCall(c["func"], tuple((tuple(s), dt) for s, dt in c["args"]), c.get("kind"))
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
            None if d.get("memory") is None else MemoryReport.from_dict(d["memory"]),
            [GoldenVector.from_dict(g) for g in d.get("golden", [])],
            d.get("family"),
        )


def manifest_path(library: str | Path) -> Path:
    library = Path(library)
    return library.with_name(library.name + ".json")


def write_manifest(library: str | Path, manifest: LibraryManifest) -> Path:
    path = manifest_path(library)
    with atomic_output(path) as tmp:
        tmp.write_text(manifest.to_json() + "\n")
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
        if not isinstance(data, dict):
            raise ValueError(f"holds a JSON {type(data).__name__}, not an object")
        version = data.get("version", 0)
        if not isinstance(version, int):
            raise ValueError(f"version {version!r} is not an integer")
        if version > MANIFEST_VERSION:
            raise ValueError(f"manifest version {data['version']} is newer than this intvit")
        return LibraryManifest.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"manifest {str(path)!r} is corrupt: {err!r}") from None
    except ValueError as err:
        raise ValueError(f"manifest {str(path)!r}: {err}") from None
