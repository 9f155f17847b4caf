"""The guest side of a counted run: the program, its environment and its file system.

aarch64: the emulated device's arm64 Python sysroot (:mod:`intvit.deploy.emulator`), seen
through a per-core root that adds a ``/proc/cpuinfo`` and a one-CPU ``/sys`` tree matching the
emulated CPU (qemu-user opens ``$QEMU_LD_PREFIX/<path>`` for an absolute path when that file
exists), and a site folder with ONNX Runtime's aarch64 wheel beside TVM's. x86_64: this
machine's own Python, run under ``qemu-x86_64`` so that the same plugin counts it.

Every runtime runs one thread, and numpy's BLAS too (its idle threads would add noise).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from intvit.analysis.emulated_cores import EmulatedCore
from intvit.analysis.qemu_count import CountError

HARNESS = Path(__file__).with_name("guest_harness.py")
#: One thread for every runtime and numpy's BLAS in the guest.
ONE_THREAD = {
    "TVM_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class Guest:
    """How to start the harness in one guest: qemu's arch and CPU, the Python, the env."""

    arch: str
    qemu_cpu: str | None
    python: str
    env: dict[str, str]

    def argv(
        self, runtime: str, model: Path, image: Path, runs: int, maps: Path, output: Path | None
    ) -> list[str]:
        args = [self.python, str(HARNESS), runtime, str(model), str(image), str(runs), str(maps)]
        return args if output is None else [*args, str(output)]


#: LiteRT's runtime for the XNNPACK peer (its aarch64 wheel runs under the emulated Python),
#: with the pure-Python packages its interpreter imports.
LITERT = "ai-edge-litert==2.3.0"
LITERT_DEPS = ("flatbuffers", "backports.strenum", "protobuf", "tqdm")


def _onnxruntime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        raise CountError("onnxruntime is not installed here (pip install -e '.[peers]')") from None


def ensure_peer_site(root: Path) -> Path:
    """The peers' aarch64 wheels unpacked under ``root``: ONNX Runtime at the version installed
    here, and LiteRT (XNNPACK) with its pure-Python dependencies."""
    ort = _onnxruntime_version()
    site = root / f"site-peers-ort{ort}-{LITERT.replace('==', '')}"
    if (site / ".complete").exists():
        return site
    wheels = root / f"{site.name}-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    for platform in ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "any"):
        cmd += ["--platform", platform]
    cmd += ["--python-version", "3.11", "--implementation", "cp", "-d", str(wheels)]
    packages = [f"onnxruntime=={ort}", LITERT, *LITERT_DEPS]
    result = subprocess.run([*cmd, *packages], capture_output=True, text=True)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CountError(f"cannot download the peers' aarch64 wheels: {tail[0]}")
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    (site / ".complete").write_text("ok\n")
    return site


def core_root(root: Path, core: EmulatedCore) -> Path:
    """The per-core guest root: the sysroot's folders linked, plus ``proc/cpuinfo`` and a
    one-CPU ``sys/devices/system/cpu`` for ``core``."""
    croot = root / f"count-root-{core.name}"
    cpu = croot / "sys" / "devices" / "system" / "cpu"
    (cpu / "cpu0").mkdir(parents=True, exist_ok=True)
    (croot / "proc").mkdir(exist_ok=True)
    for name in ("etc", "lib", "usr"):
        link = croot / name
        if not link.is_symlink():
            link.symlink_to(root / "sysroot" / name)
    (croot / "proc" / "cpuinfo").write_text(core.cpuinfo())
    for name in ("possible", "present", "online"):
        (cpu / name).write_text("0\n")
    return croot


def aarch64_guest(core: EmulatedCore, root: Path | None = None, peers: bool = True) -> Guest:
    """The emulated device's Python for ``core`` (sysroot set up once, needs root and apt)."""
    from intvit.deploy.emulator import EmulatorError, default_root, emulator_env, ensure_sysroot

    root = root or default_root()
    try:
        ensure_sysroot(root)
    except EmulatorError as err:
        raise CountError(str(err)) from None
    paths = [str(root / "site")]
    if peers:
        paths.append(str(ensure_peer_site(root)))
    env = emulator_env(root)  # the emulated device's Python, seen through the core's root
    env.update(ONE_THREAD)
    env["QEMU_LD_PREFIX"] = str(core_root(root, core))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    python = str(root / "sysroot" / "usr" / "bin" / "python3.11")
    return Guest("aarch64", core.qemu_cpu, python, env)


def host_guest() -> Guest:
    """This machine's Python under ``qemu-x86_64`` (``-cpu max``: QEMU 7.2 runs AVX2 and FMA;
    AVX-512 and VNNI it does not, so calibration needs a host whose libraries use neither)."""
    env = dict(os.environ)
    env.update(ONE_THREAD)
    env["TVM_USE_RUNTIME_LIB"] = "1"
    return Guest("x86_64", "max", sys.executable, env)
