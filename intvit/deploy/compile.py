"""Compile an integer model for a target preset and export a deployable library.

Linux targets (host, aarch64 presets) export a shared library (``.so``) linked here, with the
preset's cross compiler where it has one. Apple targets cannot be linked here: they export an
object archive (``.tar``) and :func:`apple_link_command` says how to link it on a Mac.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tvm
from tvm import relax

from intvit.deploy.targets import TargetPreset, get_preset
from intvit.quant.int_vit import IntModel
from intvit.relax_ops.graph import build_module


def compile_model(model: IntModel, preset: TargetPreset | str = "host", batch: int = 1):
    """The Relax VM executable of ``model`` for ``preset`` (default pipeline)."""
    if isinstance(preset, str):
        preset = get_preset(preset)
    mod = build_module(model, batch)
    return tvm.compile(
        mod, target=preset.tvm_target(), relax_pipeline=relax.get_pipeline("default")
    )


def cross_compiler(preset: TargetPreset):
    """The ``fcompile`` for ``export_library``; ValueError if the toolchain is missing."""
    if preset.cross_compiler is None:
        return None
    if shutil.which(preset.cross_compiler) is None:
        raise ValueError(
            f"target {preset.name!r} needs the cross compiler {preset.cross_compiler!r} "
            "(Debian: apt-get install g++-aarch64-linux-gnu)"
        )
    from tvm.support import cc

    return cc.cross_compiler(preset.cross_compiler)


def apple_link_command(archive: str | Path, output: str | Path) -> str:
    """The one command that links an exported Apple archive into a dylib on a Mac."""
    return (
        f"mkdir -p objs && tar -xf {archive} -C objs && "
        f"clang++ -dynamiclib -undefined dynamic_lookup -o {output} objs/*.o"
    )


def export(executable, preset: TargetPreset | str, path: str | Path) -> Path:
    """Write the deployable library for ``preset`` to ``path`` (``.so``; ``.tar`` for Apple)."""
    if isinstance(preset, str):
        preset = get_preset(preset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not preset.linkable_here:
        path = path.with_suffix(".tar")
        executable.export_library(str(path))
        return path
    fcompile = cross_compiler(preset)
    if fcompile is None:
        executable.export_library(str(path))
    else:
        executable.export_library(str(path), fcompile=fcompile)
    return path
