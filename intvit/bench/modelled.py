"""Whole models on modelled cores: intvit's library beside TVM FP32 and ONNX Runtime's FP32 and
int8 builds of the same random weights, each counted exactly under QEMU and costed with
llvm-mca (:mod:`intvit.analysis.model_profile`); and the calibration of that model on this
x86 host, where the modelled time can be set beside a measured one.

Every build runs batch 1 in one thread. intvit's libraries are checked bit-exact against the
reference forward in the counted runs themselves (the aarch64 ones on the emulated core).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from intvit.analysis.block_cost import McaCore
from intvit.analysis.emulated_cores import EmulatedCore
from intvit.analysis.guest import Guest, aarch64_guest, host_guest
from intvit.analysis.model_profile import (
    Build,
    BuildProfile,
    cost_profile,
    count_build,
    manifest_categories,
    save_input,
)
from intvit.analysis.qemu_count import CountError
from intvit.deploy.manifest import LibraryManifest, read_manifest
from intvit.deploy.targets import TargetPreset, get_preset

INTVIT = "intvit"
TVM_FP32 = "TVM FP32"
ORT_FP32 = "ORT FP32"
ORT_INT8_STATIC = "ORT int8 static"
ORT_INT8_DYNAMIC = "ORT int8 dynamic"
XNNPACK_FP32 = "XNNPACK FP32"
XNNPACK_INT8 = "XNNPACK int8"
ORT_BUILDS = {ORT_FP32: None, ORT_INT8_STATIC: "static", ORT_INT8_DYNAMIC: "dynamic"}
INT8_PEERS = (ORT_INT8_STATIC, ORT_INT8_DYNAMIC, XNNPACK_INT8)
FP32_PEERS = (TVM_FP32, ORT_FP32, XNNPACK_FP32)
#: The converter script for the XNNPACK peer (LiteRT), run by a Python with litert-torch.
LITERT_CONVERTER = Path(__file__).with_name("litert_convert.py")
#: LiteRT's library that holds XNNPACK, with its symbols (kernels are attributed by them).
LITERT_KERNELS = "libpywrap_litert_common.so"


@dataclass(frozen=True)
class ModelCase:
    """One model with random weights, its integer model and inputs, in a work folder."""

    name: str
    float_model: object
    int_model: object
    int8_image: Path
    float_image: Path
    reference: Path
    folder: Path


@dataclass(frozen=True)
class BuildError:
    """A build that could not be counted on a core, and why."""

    build: str
    model: str
    core: str
    error: str

    def as_dict(self) -> dict:
        return vars(self)


def prepare_model(name: str, folder: Path) -> ModelCase:
    """``name`` (a zoo model or a shipped heterogeneous arch) with seed-0 random weights,
    calibrated on 8 random images; its int8 and float inputs saved as ``.npy``."""
    import torch

    from intvit.models.hetero_vit import HeteroViT, resolve_arch
    from intvit.models.zoo import SMALL_CONFIGS, create_float_model
    from intvit.quant.calibrate import calibrate
    from intvit.quant.reference import reference_forward

    torch.manual_seed(0)
    if name in SMALL_CONFIGS or not name.startswith("digits_"):
        model = create_float_model(name)
    else:
        model = HeteroViT(resolve_arch(name)).eval()
    img = int(model.patch_embed.img_size[0])
    chans = int(model.patch_embed.proj.in_channels)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, chans, img, img)).astype(np.float32)
    int_model = calibrate(model, calib, progress=False)
    folder = folder / name
    q = rng.integers(-128, 128, (1, chans, img, img), dtype=np.int8)
    x = rng.standard_normal((1, chans, img, img)).astype(np.float32)
    return ModelCase(
        name,
        model,
        int_model,
        save_input(q, folder / "int8.npy"),
        save_input(x, folder / "float.npy"),
        save_input(reference_forward(int_model, q), folder / "reference.npy"),
        folder,
    )


def _exported(compiled, preset: TargetPreset, path: Path) -> tuple[Path, LibraryManifest]:
    from intvit.deploy.compile import export

    lib = export(compiled, preset, path)
    return lib, read_manifest(lib)


def tvm_builds(case: ModelCase, preset: TargetPreset, tag: str, fp32: bool = True) -> list[Build]:
    """intvit's library and (``fp32``) TVM's FP32 build (its tuning flow's module, untuned: no
    device here to tune on) for ``preset`` with one core."""
    from intvit.deploy.compile import compile_float_model, compile_int_model

    preset = replace(preset, target=dict(preset.target, **{"num-cores": 1}))
    lib, manifest = _exported(
        compile_int_model(case.int_model, preset), preset, case.folder / f"intvit-{tag}.so"
    )
    ours = Build(
        name=INTVIT,
        model=case.name,
        runtime="tvm",
        library=lib.resolve(),
        image=case.int8_image,
        calls=manifest_categories(manifest),
        reference=case.reference,
    )
    if not fp32:
        return [ours]
    shape = tuple(np.load(case.float_image).shape)
    compiled = compile_float_model(case.float_model, shape, preset, case.name)
    library, fp32_manifest = _exported(compiled, preset, case.folder / f"tvm-fp32-{tag}.so")
    baseline = Build(
        name=TVM_FP32,
        model=case.name,
        runtime="tvm",
        library=library.resolve(),
        image=case.float_image,
        calls=manifest_categories(fp32_manifest),
    )
    return [ours, baseline]


def _peer_calibration(image: np.ndarray) -> np.ndarray:
    """The 8 random images every int8 peer calibrates on (seed 1), shaped like ``image``."""
    return np.random.default_rng(1).standard_normal((8, *image.shape[1:])).astype(np.float32)


def ort_builds(case: ModelCase) -> list[Build]:
    """ONNX Runtime FP32, int8 static QDQ and int8 dynamic of the same float model (the ONNX
    files are portable: the same files run on every core)."""
    from intvit.bench.peers import export_onnx, quantize_onnx

    image = np.load(case.float_image)
    fp32 = export_onnx(case.float_model, image, case.folder / "model.onnx")
    calib = _peer_calibration(image)
    files = {ORT_FP32: fp32}
    for label, mode in ORT_BUILDS.items():
        if mode is not None:
            files[label] = quantize_onnx(fp32, mode, calib, case.folder / f"model-{mode}.onnx")
    return [
        Build(
            name=label,
            model=case.name,
            runtime="onnxruntime",
            library=path.resolve(),
            image=case.float_image,
        )
        for label, path in files.items()
    ]


def litert_python(requested: str | None) -> str:
    """The Python that converts models for LiteRT: ``requested``, else this one when it has
    litert-torch; CountError saying how to get one otherwise."""
    import importlib.util
    import sys

    if requested:
        return requested
    if importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    raise CountError(
        "XNNPACK (LiteRT) not built: litert-torch is not installed (pip install -e "
        "'.[xnnpack]', or give a Python that has it with --litert-python)"
    )


def litert_builds(case: ModelCase, python: str) -> list[Build]:
    """LiteRT FP32 and int8 models of the same float model (XNNPACK through LiteRT's default
    delegate), converted by :data:`LITERT_CONVERTER` in ``python`` from a ``torch.export``
    program of the model (the same weights, whichever Python converts)."""
    import subprocess

    import torch

    image = np.load(case.float_image)
    calib = _peer_calibration(image)
    calib_path = save_input(calib, case.folder / "litert-calib.npy")
    program = case.folder / "model.pt2"
    with torch.no_grad():
        exported = torch.export.export(case.float_model, (torch.from_numpy(image),))
    torch.export.save(exported, str(program))
    prefix = case.folder / "litert"
    result = subprocess.run(
        [python, str(LITERT_CONVERTER), str(program), str(calib_path), str(prefix)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-2:])
        raise CountError(f"XNNPACK (LiteRT) conversion failed: {tail}")
    return [
        Build(
            name=label,
            model=case.name,
            runtime="litert",
            library=Path(f"{prefix}-{kind}.tflite").resolve(),
            image=case.float_image,
            symbol_files=(LITERT_KERNELS,),
        )
        for label, kind in ((XNNPACK_FP32, "fp32"), (XNNPACK_INT8, "int8"))
    ]


def profile_builds(
    builds: list[Build],
    guest: Guest,
    cores: list[tuple[str, McaCore, float]],
    work: Path,
) -> Iterator[BuildProfile | BuildError]:
    """Count each build once in ``guest`` and cost it on each (name, model, clock) core."""
    for build in builds:
        try:
            counts = count_build(build, guest, work)
        except CountError as err:
            for name, _, _ in cores:
                yield BuildError(build.name, build.model, name, str(err))
            continue
        for name, mca, clock in cores:
            yield cost_profile(build, counts, mca, name, clock, guest.arch)


def profile_on_core(
    case: ModelCase,
    core: EmulatedCore,
    peers: list[Build],
    work: Path,
    only: set[str] | None = None,
) -> Iterator[BuildProfile | BuildError]:
    """Every build of ``case`` on one modelled core: intvit's and TVM FP32's for its preset
    (unless ``only`` names neither), and the peers' (ONNX Runtime, LiteRT: the same files on
    every core)."""
    preset = get_preset(core.preset)
    ours = [] if only is not None and not only & {INTVIT, TVM_FP32} else None
    if ours is None:
        ours = tvm_builds(case, preset, core.name, fp32=only is None or TVM_FP32 in only)
        ours = [b for b in ours if only is None or b.name in only]
    builds = [*ours, *peers]
    guest = aarch64_guest(core)
    yield from profile_builds(builds, guest, [(core.name, core.mca, core.clock_ghz)], work)


# -- calibration on this x86 host -------------------------------------------------------------


#: The x86 build QEMU 7.2 can run (AVX2 and FMA; it has no AVX-512), for calibration.
CALIBRATION_PRESET = TargetPreset(
    "x86-avx2",
    {"kind": "llvm", "mcpu": "znver2", "num-cores": 1},
    "x86-64 with AVX2 and FMA (what qemu-x86_64 7.2 emulates)",
    features=("avx2", "fma"),
)


_CLOCK_PROBE = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    const long n = 100000000;
    unsigned long x = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (long i = 0; i < n; i++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%f\n", 4.0 * n / ns);
    return x == 0;
}
"""


def host_clock_ghz(work: Path, tries: int = 5) -> float:
    """This core's clock as it runs, measured: a chain of dependent adds (one cycle each on
    every x86 core) timed in the thread's CPU time, the fastest of ``tries``. A VM's ``cpu
    MHz`` gives the base clock, while a busy core runs at its boost clock."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise CountError("no C compiler for the clock probe")
    work.mkdir(parents=True, exist_ok=True)
    src, exe = work / "clock_probe.c", work / "clock_probe"
    src.write_text(_CLOCK_PROBE)
    subprocess.run([compiler, "-O1", "-o", str(exe), str(src)], check=True)
    return max(
        float(subprocess.run([str(exe)], capture_output=True, text=True).stdout)
        for _ in range(tries)
    )


def measured_ms(build: Build, rounds: int = 7, number: int = 5) -> float:
    """The fastest of ``rounds`` means of ``number`` runs of the build here, one thread, in the
    calling thread's CPU time: at one thread TVM and ONNX Runtime run the whole inference in
    the caller, and time the thread spends descheduled is not counted, so other work on the
    machine does not inflate the figure (the fastest: neighbours slow runs, never speed them)."""
    run = _host_runner(build)
    for _ in range(3):
        run()
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(number):
            run()
        best = min(best, (time.thread_time() - start) * 1e3 / number)
    return best


def _host_runner(build: Build) -> Callable[[], object]:
    image = np.load(build.image)
    if build.runtime == "tvm":
        import tvm
        from tvm import relax

        if int(tvm.runtime.num_threads()) != 1:
            raise CountError("calibration times one thread: start it with TVM_NUM_THREADS=1")
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(build.library)), tvm.cpu())
        x = tvm.runtime.tensor(image)
        main = vm["main"]
        return lambda: main(x)
    from intvit.bench.peers import onnxruntime_runner

    return onnxruntime_runner(build.library, image, 1)


@dataclass(frozen=True, kw_only=True)
class CalibrationPoint:
    """One build's modelled time on this host's core against its measured time here.

    ``error`` = modelled / measured - 1 (dependency-aware cycles), ``bound_error`` the same for
    the resource bound alone. ``same_code``: whether the code counted under
    ``qemu-x86_64`` is the code timed here; ONNX Runtime picks its kernels from CPUID, so on a
    host with AVX-512 it times AVX-512 kernels while QEMU 7.2 (no AVX-512) counts AVX2 ones."""

    build: str
    model: str
    mcpu: str
    cycles: float
    bound_cycles: float
    clock_ghz: float
    modelled_ms: float
    bound_ms: float
    measured_ms: float
    error: float
    bound_error: float
    same_code: bool
    libraries: tuple = ()

    def as_dict(self) -> dict:
        d = dict(vars(self))
        d["libraries"] = [vars(k) for k in self.libraries]
        return d


def calibrate_on_host(case: ModelCase, ort: list[Build], work: Path) -> list[CalibrationPoint]:
    """Count intvit's and TVM FP32's AVX2 builds and ONNX Runtime's builds of ``case`` under
    ``qemu-x86_64``, cost them with llvm-mca for this CPU, and time them here."""
    from intvit.schedules.hostcpu import host_cpu

    cpu, features = host_cpu()
    clock = host_clock_ghz(work)
    builds = [*tvm_builds(case, CALIBRATION_PRESET, "x86-avx2"), *ort]
    points = []
    for item in profile_builds(builds, host_guest(), [(cpu, McaCore("x86_64", cpu), clock)], work):
        if isinstance(item, BuildError):
            raise CountError(f"{item.build} {item.model}: {item.error}")
        build = next(b for b in builds if b.name == item.build)
        measured = measured_ms(build)
        points.append(
            CalibrationPoint(
                build=item.build,
                model=item.model,
                mcpu=cpu,
                cycles=item.cycles,
                bound_cycles=item.bound_cycles,
                clock_ghz=clock,
                modelled_ms=item.ms,
                bound_ms=item.bound_ms,
                measured_ms=measured,
                error=item.ms / measured - 1.0,
                bound_error=item.bound_ms / measured - 1.0,
                same_code=build.runtime == "tvm" or "avx512f" not in features,
                libraries=item.libraries,
            )
        )
    return points


# -- one exported library, for intvit bench --modelled ------------------------------------------


def core_for(preset: str, requested: str | None) -> EmulatedCore:
    """The modelled core named ``requested``, else the one whose preset built the library."""
    from intvit.analysis.emulated_cores import CORES, get_core

    if requested:
        return get_core(requested)
    for core in CORES.values():
        if core.preset == preset:
            return core
    raise ValueError(
        f"no modelled core builds with preset {preset!r}; name one: {', '.join(CORES)}"
    )


def library_profile(library: Path, core: str | None, work: Path) -> tuple[BuildProfile, str]:
    """The modelled profile of an exported aarch64 library on its core (or ``core``), counted
    under QEMU on a random input of its manifest's shape; and the core's note."""
    manifest = read_manifest(library)
    if manifest.arch != "aarch64":
        raise ValueError(
            f"{str(library)!r} is built for {manifest.arch}: the modelled profile is of aarch64 "
            "libraries (intvit compile --target graviton, graviton3, rpi4 or rpi5)"
        )
    spec = core_for(manifest.preset, core)
    rng = np.random.default_rng(0)
    if manifest.input_dtype == "int8":
        image = rng.integers(-128, 128, manifest.input_shape, dtype=np.int8)
    else:
        image = rng.standard_normal(manifest.input_shape).astype(manifest.input_dtype)
    build = Build(
        name=INTVIT if manifest.kind == "int" else TVM_FP32,
        model=manifest.model,
        runtime="tvm",
        library=Path(library).resolve(),
        image=save_input(image, work / "input.npy"),
        calls=manifest_categories(manifest),
    )
    counts = count_build(build, aarch64_guest(spec, peers=False), work)
    return cost_profile(build, counts, spec.mca, spec.name, spec.clock_ghz, "aarch64"), spec.note


def format_profile(profile: BuildProfile, note: str, top: int = 8) -> str:
    """The profile as a short table: totals, the mix, cycles by kernel category and the most
    expensive kernels, under the model's caveat."""
    from intvit.analysis.block_cost import MODEL_CAVEAT

    mix = profile.mix
    lines = [
        f"modelled on {profile.core} ({note})",
        f"  {MODEL_CAVEAT}",
        f"  instructions per inference (exact): {profile.instructions:,}",
        "  mix: "
        + ", ".join(f"{c} {mix.share(c):.0%}" for c in ("multiply", "load", "store", "vector"))
        + f", scalar {mix.share('scalar'):.0%}",
        f"  modelled: {profile.cycles:,.0f} cycles = {profile.ms:.3f} ms at "
        f"{profile.clock_ghz} GHz (resource bound alone {profile.bound_ms:.3f} ms)",
        f"  {'category':<14}{'cycles':>8}",
    ]
    categories = profile.category_cycles()
    other = profile.cycles - sum(categories.values())
    for name, cycles in sorted(categories.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<14}{cycles / profile.cycles:>8.1%}")
    lines.append(f"  {'runtime, libc':<14}{other / profile.cycles:>8.1%}")
    lines.append(f"  {'kernel':<36}{'category':<12}{'instructions':>14}{'cycles':>8}")
    for k in profile.kernels[:top]:
        lines.append(
            f"  {k.name[:35]:<36}{k.category:<12}{k.instructions:>14,}"
            f"{k.cycles / profile.cycles:>8.1%}"
        )
    return "\n".join(lines)
