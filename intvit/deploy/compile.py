"""Compile an integer model (or the float model it came from) for a target preset and export a
deployable library with its manifest.

Linux targets (host, aarch64 presets) export a shared library (``.so``) linked here, with the
preset's cross compiler where it has one. Apple targets cannot be linked here: they export an
object archive (``.tar``) and :func:`apple_link_command` says how to link it on a Mac.
Every export writes ``<library>.json`` (:mod:`intvit.deploy.manifest`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import relax

from intvit.deploy.manifest import KernelCall, LibraryManifest, write_manifest
from intvit.deploy.memory import memory_report
from intvit.deploy.signature import with_input_signature
from intvit.deploy.targets import TargetPreset, get_preset
from intvit.paths import atomic_output
from intvit.quant.int_model import IntModel
from intvit.relax_ops.graph import build_module
from intvit.schedules.triple import arch_of_target
from intvit.topi.kinds import kernel_kind


@dataclass
class CompiledModel:
    """A Relax VM executable and the manifest that goes beside its exported library."""

    executable: tvm.runtime.Executable
    manifest: LibraryManifest
    #: Optional: the same TIR kernels built as a plain module whose functions are reachable
    #: by name (a per-operator profile times them over RPC, which cannot reach the kernels
    #: imported by a VM library).
    kernels: tvm.runtime.Executable | None = None


def _as_preset(preset: TargetPreset | str) -> TargetPreset:
    return get_preset(preset) if isinstance(preset, str) else preset


def _shape_dtype(ty) -> tuple[tuple[int, ...], str]:
    return tuple(int(s) for s in ty.shape.values), str(ty.dtype)


def kernel_calls(lowered: tvm.IRModule) -> list[KernelCall]:
    """The TIR calls of a lowered ``main`` in execution order, with argument shapes/dtypes."""
    calls = []
    for block in lowered["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.GlobalVar):
                continue
            if not isinstance(lowered[value.op], tvm.tirx.PrimFunc):
                continue
            args = []
            for arg in value.args:
                args.append(_shape_dtype(arg.ty))
            kind = kernel_kind(lowered[value.op])
            calls.append(KernelCall(value.op.name_hint, tuple(args), kind))
    return calls


def compile_relax(
    mod: tvm.IRModule, preset: TargetPreset | str, kind: str, model: str, profile: bool = False
) -> CompiledModel:
    """Lower ``mod`` with TVM's default Relax pipeline for ``preset`` and build it (and, with
    ``profile``, its kernels as a separate library for per-operator timing). The library
    also exports ``main``'s input signature (:mod:`intvit.deploy.signature`), against which a
    bench checks the manifest."""
    preset = _as_preset(preset)
    target = preset.tvm_target()
    with target:
        lowered = relax.get_pipeline("default")(with_input_signature(mod))
    executable = tvm.compile(lowered, target=target, relax_pipeline=None)
    kernels = None
    if profile:
        prims = {gv: f for gv, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
        kernels = tvm.compile(tvm.IRModule(prims), target=target)
    (param,) = mod["main"].params
    manifest = LibraryManifest(
        preset=preset.name,
        target=dict(preset.target),
        arch=arch_of_target(preset.target),
        input_shape=_shape_dtype(param.ty)[0],
        input_dtype=_shape_dtype(param.ty)[1],
        kind=kind,
        model=model,
        calls=kernel_calls(lowered),
        memory=memory_report(mod, lowered),
    )
    return CompiledModel(executable, manifest, kernels)


def lowered_module(model: IntModel, preset: TargetPreset | str = "host", batch: int = 1):
    """``(unplanned, lowered)``: the model's scheduled Relax module and what TVM's default
    pipeline (static memory planning included) makes of it, without code generation."""
    from intvit.schedules.model import schedule_rows

    preset = _as_preset(preset)
    mod = schedule_rows(scheduled_module(model, preset, batch), preset.cores)
    with preset.tvm_target():
        return mod, relax.get_pipeline("default")(mod)


def plan_memory(model: IntModel, preset: TargetPreset | str = "host", batch: int = 1):
    """The :class:`MemoryReport` of ``model``'s library for ``preset`` (no code generation:
    the activation plan and constants only; ``library_bytes`` is None)."""
    return memory_report(*lowered_module(model, preset, batch))


def scheduled_module(
    model: IntModel, preset: TargetPreset, batch: int, tunable: bool = False
) -> tvm.IRModule:
    """The model's Relax module with its GEMMs scheduled; with ``tunable``, the packed GEMMs
    are left for a tuning job (which searches their knobs) or a database to schedule."""
    from intvit.schedules.intrinsics import gemm_kernels_for
    from intvit.schedules.model import schedule_gemms

    kernels = gemm_kernels_for(preset.target)
    module = build_module(model, batch, kernels, preset.cores)
    return schedule_gemms(module, kernels, preset.cores, leave_packed=tunable)


def compile_int_model(
    model: IntModel,
    preset: TargetPreset | str = "host",
    batch: int = 1,
    profile: bool = False,
    schedules: bool = True,
    db: str | Path | None = None,
    not_replayed: list[str] | None = None,
) -> CompiledModel:
    """The integer-only model for ``preset``: int8 image in, int32 logit accumulators out.

    ``schedules``: intvit's schedules (GEMMs tensorized with the target's dot-product
    instructions, weights pre-packed, requantization in the GEMM epilogue; parallel row
    kernels). Without them, TVM's default lowering of the same computation.

    ``db``: a tuning database; each kernel it has a record for gets the tuned schedule, the
    others their default one. Kernels whose record does not replay on them are appended to
    ``not_replayed``."""
    preset = _as_preset(preset)
    name = model.source or "int model"
    if not schedules:
        compiled = compile_relax(build_module(model, batch), preset, "int", name, profile)
        return with_reference(compiled, model)
    from intvit.schedules.model import schedule_rows

    mod = scheduled_module(model, preset, batch, tunable=db is not None)
    if db is not None:  # tuned schedules first, then the GEMMs' default knobs
        from intvit.schedules.database import apply_database
        from intvit.schedules.intrinsics import gemm_kernels_for
        from intvit.schedules.model import schedule_gemms

        mod = apply_database(mod, db, preset.tvm_target(), not_replayed)
        mod = schedule_gemms(mod, gemm_kernels_for(preset.target), preset.cores)
    # the row schedule for the row kernels without a tuned one
    compiled = compile_relax(schedule_rows(mod, preset.cores), preset, "int", name, profile)
    return with_reference(compiled, model)


def with_reference(compiled: CompiledModel, model: IntModel) -> CompiledModel:
    """``compiled`` with its manifest carrying ``model``'s family and golden vectors (the
    reference forward's outputs for :data:`~intvit.deploy.golden.GOLDEN_INPUTS`)."""
    from intvit.deploy.golden import golden_vectors

    m = compiled.manifest
    m.family = model.arch.family
    m.golden = golden_vectors(model, m.input_shape, m.input_dtype)
    return compiled


def compile_model(
    model: IntModel, preset: TargetPreset | str = "host", batch: int = 1, schedules: bool = True
):
    """The Relax VM executable of ``model`` for ``preset``."""
    return compile_int_model(model, preset, batch, schedules=schedules).executable


def float_module(torch_model, image_shape: tuple[int, ...]) -> tvm.IRModule:
    """The float32 Relax module of a torch model (weights as constants), via torch.export."""
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    example = torch.zeros(image_shape, dtype=torch.float32)
    with torch.no_grad():
        program = torch.export.export(torch_model.eval(), (example,))
    return clip_takes(from_exported_program(program, keep_params_as_input=False))


def clip_takes(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every ``R.take`` in ``clip`` mode instead of the importer's ``fast``: the
    same values for in-bound indices (a model's token and position gathers always are), and
    no "Fast mode segfaults" warning from TVM's legalization, which means nothing to a user."""
    take = tvm.ir.Op.get("relax.take")

    @relax.expr_functor.mutator
    class _ClipTakes(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op.same_as(take) and str(call.attrs.mode) == "fast":
                return relax.op.take(call.args[0], call.args[1], call.attrs.axis, mode="clip")
            return call

    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            out[gv] = _ClipTakes().visit_expr(func)
    return out


def fused_float_module(
    torch_model, image_shape: tuple[int, ...], preset: TargetPreset | str
) -> tvm.IRModule:
    """The FP32 baseline as TVM's own tuning flow prepares it (its ``zero`` pipeline: legalize,
    fold the constant weight transposes, fuse elementwise ops into their producers): what
    the baseline's tuning job tunes and its build compiles, so it is TVM at its best."""
    mod = float_module(torch_model, image_shape)
    with _as_preset(preset).tvm_target():
        return tvm.transform.Sequential(
            [
                relax.transform.LegalizeOps(),
                relax.transform.AnnotateTIROpPattern(),
                relax.transform.FoldConstant(),
                relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
            ]
        )(mod)


def compile_float_model(
    torch_model,
    image_shape: tuple[int, ...],
    preset: TargetPreset | str,
    name: str,
    profile: bool = False,
    db: str | Path | None = None,
) -> CompiledModel:
    """TVM's FP32 build of the float model (the baseline of every speed comparison), with the
    best schedules of a tuning database (:func:`intvit.tune.job.tune_float_model`) if given."""
    preset = _as_preset(preset)
    mod = fused_float_module(torch_model, image_shape, preset)
    if db is not None:
        from intvit.schedules.database import apply_database

        mod = apply_database(mod, db, preset.tvm_target())
    return compile_relax(mod, preset, "fp32", name, profile)


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


def _export_library(executable, preset: TargetPreset, path: Path) -> Path:
    """Export through a temporary file beside ``path`` (the linker never writes the final
    name: a full disk or an interrupt leaves no partial library)."""
    if not preset.linkable_here:
        path = path.with_suffix(".tar")
    fcompile = cross_compiler(preset) if preset.linkable_here else None
    try:
        with atomic_output(path, executable=path.suffix == ".so") as tmp:
            if fcompile is None:
                executable.export_library(str(tmp))
            else:
                executable.export_library(str(tmp), fcompile=fcompile)
    except RuntimeError as err:  # the linker's failure (a full disk, a broken toolchain)
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "No space left" in line), None)
        raise ValueError(
            f"cannot write the library {str(path)!r}: "
            + (reason.strip() if reason else f"the linker failed: {lines[-1] if lines else err}")
        ) from None
    return path


def export(
    compiled: CompiledModel | tvm.runtime.Executable, preset: TargetPreset | str, path: str | Path
) -> Path:
    """Write the deployable library for ``preset`` to ``path`` (``.so``; ``.tar`` for Apple),
    and its manifest (and kernel library, if built) beside it when ``compiled`` carries one."""
    preset = _as_preset(preset)
    executable = compiled.executable if isinstance(compiled, CompiledModel) else compiled
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path = _export_library(executable, preset, path)
    if isinstance(compiled, CompiledModel):
        if compiled.manifest.memory is not None:
            memory = compiled.manifest.memory
            compiled.manifest.memory = memory.with_library(path.stat().st_size)
        if compiled.kernels is not None:
            kernels = _export_library(compiled.kernels, preset, kernels_path(path))
            compiled.manifest.kernels_library = kernels.name
        write_manifest(path, compiled.manifest)
    return path


def kernels_path(library: str | Path) -> Path:
    library = Path(library)
    return library.with_name(library.stem + ".kernels" + library.suffix)
