"""``intvit bench``: the integer-only library on an RPC device, against the FP32 TVM build of
the same model on the same device (and, on the host, PyTorch eager and ONNX Runtime), with a
per-operator profile. The report is rewritten after every step, so a failing device loses
nothing already measured.
"""

from __future__ import annotations

import platform
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path

import numpy as np

from intvit.bench.report import BenchReport
from intvit.deploy.bench import BenchConfig, DeviceError, DeviceSession
from intvit.deploy.manifest import read_manifest

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class BenchRequest:
    """What to benchmark where. ``source``: an integer model (``.safetensors``, compiled here
    for the device) or an exported library (``.so`` with its manifest)."""

    source: Path
    tracker: str = "127.0.0.1:9190"
    key: str = "local"
    _: KW_ONLY
    target: str | None = None  # preset; default: detected from the device
    compare: bool = False
    per_op: bool = False
    float_model: str | None = None  # for --compare; default: read from the artifact
    checkpoint: str | None = None
    out: Path = Path("out/bench")
    config: BenchConfig = field(default_factory=BenchConfig)
    progress: bool = True


def claim_report_name(out: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... : the first whose ``.json`` report does not
    exist yet, claimed at once (created exclusively), so that two benches of one library
    into one folder, even at the same time, never overwrite each other's report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        name = stem if n == 1 else f"{stem}-{n}"
        try:
            with open(out / f"{name}.json", "x") as f:
                f.write('{"status": "starting", "latencies": []}\n')
            return name
        except FileExistsError:
            continue
    raise ValueError(f"{str(out)!r} holds 10000 reports named {stem!r}; choose another --out")


def is_emulated(device_arch: str | None, tracker_host: str) -> bool:
    """An ARM device behind a tracker on this x86 machine can only be the emulated one."""
    local = tracker_host in LOCAL_HOSTS
    return local and device_arch in ("aarch64", "arm64") and platform.machine() == "x86_64"


def detect_preset(session: DeviceSession) -> str:
    """The preset for what the device reports about itself."""
    from intvit.deploy.targets import host_cpu

    if session.arch is None:
        raise ValueError(
            f"device {session.key!r} does not say what CPU it has (no LLVM in its runtime): "
            "pass --target (intvit targets lists the presets)"
        )
    if session.arch == platform.machine() and session.cpu == host_cpu()[0]:
        return "host"
    if session.arch in ("aarch64", "arm64"):
        return "aarch64-linux"
    raise ValueError(
        f"device {session.key!r} is {session.arch} ({session.cpu}); pass --target to pick a preset"
    )


def float_model_name(source: str) -> str | None:
    """The float model an artifact came from, when its ``source`` names one."""
    from intvit.models.hetero_vit import is_hetero_checkpoint
    from intvit.models.zoo import SMALL_CONFIGS, SUPPORTED_PREFIXES

    name = source.split(" ")[0] if source else ""
    if name in SMALL_CONFIGS or name.startswith(SUPPORTED_PREFIXES) or is_hetero_checkpoint(name):
        return name
    return None


class _Steps:
    """A progress bar over the steps of a benchmark (or plain lines without a terminal)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=not enabled, unit="step", leave=False)

    def start(self, what: str) -> None:
        self.bar.set_description(what)

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_bench(req: BenchRequest) -> tuple[BenchReport, dict[str, Path]]:
    """Run the benchmark; on a device failure, the partial report is written and
    :class:`DeviceError` is raised with where it is."""
    from intvit.deploy.rpc import connect_tracker, parse_address

    source = Path(req.source)
    if not source.is_file():
        raise ValueError(f"{str(source)!r} does not exist")
    check_request(req)
    host, port = parse_address(req.tracker)
    tracker = connect_tracker(host, port)
    stem = claim_report_name(req.out, f"bench-{source.name.split('.')[0]}-{req.key}")
    report = BenchReport(model=source.name, device=req.key, preset=req.target or "?")
    report.config = asdict(req.config)
    steps = _Steps(2 + req.compare * 3 + req.per_op * (1 + req.compare), req.progress)
    try:
        steps.start(f"waiting for device {req.key!r}")
        with DeviceSession(tracker, req.key, req.config) as session:
            report.device_info = {"arch": session.arch, "cpu": session.cpu}
            report.preset = req.target or detect_preset(session)
            report.emulated = is_emulated(session.arch, host)
            _bench_on(session, req, source, report, steps, stem)
        report.status = "complete"
    except DeviceError as err:
        report.status, report.error = "partial", str(err)
        paths = report.write_all(req.out, stem)
        raise DeviceError(f"{err}; results so far in {paths['json']}") from err
    except BaseException as err:  # refused or interrupted: keep what was measured, or nothing
        if report.latencies:
            report.status, report.error = "partial", str(err) or type(err).__name__
            report.write_all(req.out, stem)
        else:  # no stale {"status": "starting"} report is left behind
            (Path(req.out) / f"{stem}.json").unlink(missing_ok=True)
        raise
    finally:
        steps.close()
    return report, report.write_all(req.out, stem)


def check_request(req: BenchRequest) -> None:
    """ValueError, before any device is asked, for a request that cannot give a meaningful
    report: an unknown ``--target``, a target of another architecture than the library's, or
    a ``--model`` of another family than the library's for ``--compare``."""
    from intvit.deploy.targets import get_preset

    source = Path(req.source)
    manifest = read_manifest(source) if source.suffix != ".safetensors" else None
    if req.target is not None:
        from intvit.schedules.triple import arch_of_target

        preset = get_preset(req.target)
        if manifest is not None and arch_of_target(preset.target) != manifest.arch:
            raise ValueError(
                f"--target {req.target}: the preset is for {arch_of_target(preset.target)}, "
                f"but {source.name!r} was compiled for {manifest.arch} ({manifest.preset})"
            )
    if req.compare and req.float_model is not None:
        family = _family_of_source(source, manifest)
        wanted = _family_of_name(req.float_model, req.checkpoint)
        if family is not None and wanted is not None and family != wanted:
            raise ValueError(
                f"--model {req.float_model} is a {wanted}, but {source.name!r} holds a "
                f"{family}; compare a library with its own model"
            )


def _family_of_name(name: str, checkpoint: str | None) -> str | None:
    from intvit.models.zoo import load_float_model
    from intvit.quant.family import family_of_model

    return family_of_model(load_float_model(name, checkpoint=checkpoint)).name


def _family_of_source(source: Path, manifest) -> str | None:
    """The model family a library or integer model holds (None when unknown)."""
    if manifest is None:
        from intvit.quant.artifact import load_int_model

        return load_int_model(source).arch.family
    name = float_model_name(manifest.model)
    return _family_of_name(name, None) if name is not None else manifest.family


def _bench_on(session, req, source: Path, report: BenchReport, steps, stem: str) -> None:
    from intvit.deploy.compile import compile_int_model, export

    int_model = None
    if source.suffix == ".safetensors":
        from intvit.quant.artifact import load_int_model

        int_model = load_int_model(source)
        steps.start(f"compiling for {report.preset}")
        library = export(
            compile_int_model(int_model, report.preset, profile=req.per_op),
            report.preset,
            req.out / f"{stem}.so",
        )
    else:
        library = source
    manifest = read_manifest(library)
    session.check_manifest(library, manifest)  # before anything runs main on the device
    report.libraries["integer"] = str(library)
    report.memory = manifest.memory
    steps.done()

    if manifest.golden:  # before timing: a library that computes the wrong thing is no result
        from intvit.deploy.golden import check_golden

        steps.start("checking the golden vectors on the device")
        golden = check_golden(lambda image: session.run(library, image), manifest)
        report.device_info["golden"] = dict(golden)
        report.device_info["bit_exact"] = all(ok for _, ok in golden)
        report.write_json(req.out / f"{stem}.json")
    steps.start("timing the integer-only model")
    report.latencies.append(session.measure(library, manifest, "intvit integer-only"))
    report.write_json(req.out / f"{stem}.json")
    steps.done()

    float_lib = None
    if req.compare:
        float_lib, torch_model = _float_build(req, report, manifest, int_model, stem, steps)
        steps.start("timing TVM FP32")
        report.latencies.append(session.measure(float_lib, read_manifest(float_lib), "TVM FP32"))
        report.write_json(req.out / f"{stem}.json")
        steps.done()
        steps.start("timing PyTorch / ONNX Runtime")
        if report.preset == "host":
            _host_peers(torch_model, manifest.input_shape, req.config, report)
            report.write_json(req.out / f"{stem}.json")
        steps.done()
    if req.per_op:
        steps.start("per-operator profile")
        report.per_op["intvit integer-only"] = session.profile(library, manifest)
        report.write_json(req.out / f"{stem}.json")
        steps.done()
        if float_lib is not None:
            report.per_op["TVM FP32"] = session.profile(float_lib, read_manifest(float_lib))
            report.write_json(req.out / f"{stem}.json")
            steps.done()


def _float_build(req, report, manifest, int_model, stem, steps):
    """The FP32 TVM library of the float model (trained weights where known; random weights
    time the same)."""
    from intvit.deploy.compile import compile_float_model, export
    from intvit.models.zoo import load_float_model

    name = req.float_model or (float_model_name(int_model.source) if int_model else None)
    if name is None:
        raise ValueError("--compare needs the float model: pass --model NAME")
    steps.start(f"compiling FP32 {name} for {report.preset}")
    model = load_float_model(name, checkpoint=req.checkpoint)
    shape = manifest.input_shape
    compiled = compile_float_model(model, shape, report.preset, name, profile=req.per_op)
    library = export(compiled, report.preset, req.out / f"{stem}.fp32.so")
    report.libraries["fp32"] = str(library)
    steps.done()
    return library, model


def _host_peers(model, shape, cfg: BenchConfig, report: BenchReport) -> None:
    import tvm

    from intvit.bench.peers import onnxruntime_peers, openvino_peers, torch_eager

    threads = int(tvm.runtime.num_threads())
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    report.latencies.append(torch_eager(model, image, threads, cfg))
    report.latencies.extend(onnxruntime_peers(model, image, threads, cfg))
    report.latencies.extend(openvino_peers(model, image, threads, cfg))
