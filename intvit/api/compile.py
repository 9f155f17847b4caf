"""``intvit compile``: an integer model artifact compiled for a target preset and exported as a
deployable library, with its manifest beside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from intvit.api import say_now

if TYPE_CHECKING:
    from intvit.deploy.memory import MemoryReport


@dataclass(frozen=True, kw_only=True)
class CompileRequest:
    """What to compile: an integer model (``.safetensors`` from ``intvit quantize``), the
    preset it is for, and where the library goes. ``db``: a tuning database whose records
    replace the default schedules kernel by kernel; ``schedules=False``: TVM's default
    lowering instead of intvit's schedules."""

    artifact: Path
    output: Path
    target: str = "host"
    batch: int = 1
    profile: bool = False
    schedules: bool = True
    db: Path | None = None


@dataclass(frozen=True, kw_only=True)
class CompileResult:
    """The exported library and what a user needs to know about it."""

    library: Path
    memory: MemoryReport | None
    #: kernels the database had a record for whose trace did not replay on them (their blocks
    #: differ from the tuned kernel's): they kept their default schedule
    not_replayed: tuple[str, ...] = ()
    #: Apple targets: the command that links the object file into a dylib on a Mac
    link_command: str | None = None


def run_compile(req: CompileRequest, say: Callable[[str], None] = say_now) -> CompileResult:
    """Compile and export ``req``'s model; ``say`` gets one line before the compilation."""
    from intvit.deploy.compile import apple_link_command, compile_int_model, export
    from intvit.deploy.targets import get_preset
    from intvit.quant.artifact import load_int_model

    preset = get_preset(req.target)
    model = load_int_model(req.artifact)
    if req.db is not None:  # a malformed database is named now, not after the lowering
        from intvit.schedules.database import check_database

        check_database(req.db)
    say(f"compiling {req.artifact} for {preset.name} ({preset.description}) ...")
    not_replayed: list[str] = []
    compiled = compile_int_model(
        model,
        preset,
        req.batch,
        profile=req.profile,
        schedules=req.schedules,
        db=req.db,
        not_replayed=not_replayed,
    )
    path = export(compiled, preset, req.output)
    link = None if preset.linkable_here else apple_link_command(path, path.with_suffix(".dylib"))
    return CompileResult(
        library=path,
        memory=compiled.manifest.memory,
        not_replayed=tuple(not_replayed),
        link_command=link,
    )
