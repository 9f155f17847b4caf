"""An emulated aarch64 device on this x86 machine: Debian's qemu-user-static through
binfmt_misc, an arm64 Python 3.11 sysroot from Debian packages, the aarch64 wheels of TVM and
its dependencies, and TVM's RPC server run there, registered with a tracker.

Everything is downloaded once into a cache folder (~530 MB). Needs root (binfmt_misc, apt).
Latency under emulation means nothing; correctness does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from intvit.deploy.rpc import (
    ServiceProcess,
    free_port,
    rpc_server_command,
    safe_name,
    spawn,
    wait_for_port,
)

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
ARM64_DEBS = (
    "python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libexpat1 zlib1g "
    "libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 "
    "libuuid1 libgcc-s1 libstdc++6 libcrypt1 libnsl2 libtirpc3 libdb5.3 libgssapi-krb5-2 "
    "libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1"
).split()
WHEELS = (
    "apache-tvm==0.27.*",
    "apache-tvm-ffi<0.1.15",
    "numpy",
    "ml_dtypes",
    "typing_extensions",
    "psutil",
    "cloudpickle",
    "tornado",
)


class EmulatorError(RuntimeError):
    """The emulated device cannot be set up here; the message says what is missing."""


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise EmulatorError(f"{what} failed ({' '.join(cmd[:3])} ...): {' | '.join(tail)}")


def ensure_qemu() -> None:
    if shutil.which("qemu-aarch64-static") and QEMU_CONF.exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EmulatorError("qemu-user-static is missing and cannot be installed (need root + apt)")
    _run(["apt-get", "install", "-y", "-qq", "qemu-user-static"], "installing qemu-user-static")


def ensure_binfmt() -> None:
    """Mount binfmt_misc and register qemu-aarch64 (the RPC server forks via sys.executable)."""
    ensure_qemu()
    if not (BINFMT / "register").exists():
        result = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise EmulatorError(
                f"cannot mount binfmt_misc at {BINFMT}: {result.stderr.strip()} "
                "(the emulated ARM device needs root in a container that allows it)"
            )
    if not (BINFMT / "qemu-aarch64").exists():
        try:
            (BINFMT / "register").write_text(QEMU_CONF.read_text().strip())
        except OSError as err:
            raise EmulatorError(f"cannot register qemu-aarch64 with binfmt_misc: {err}") from None


def ensure_sysroot(root: Path) -> Path:
    """The arm64 Python sysroot and site folder under ``root`` (downloaded once)."""
    sysroot, site = root / "sysroot", root / "site"
    done = root / ".complete"
    if done.exists():
        return root
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EmulatorError("building the arm64 sysroot needs root and apt-get")
    debs = root / "debs"
    for d in (sysroot, site, debs, root / "wheels"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    arches = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
    ).stdout.split()
    if "arm64" not in arches:
        _run(["dpkg", "--add-architecture", "arm64"], "adding the arm64 architecture")
    _run(["apt-get", "update", "-qq"], "apt-get update")
    _run(
        [
            "bash",
            "-c",
            f"cd {debs} && apt-get download " + " ".join(f"{p}:arm64" for p in ARM64_DEBS),
        ],
        "downloading arm64 packages",
    )
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(sysroot)], f"unpacking {deb.name}")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_aarch64",
            "--platform",
            "manylinux2014_aarch64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "-d",
            str(root / "wheels"),
            *WHEELS,
        ],
        "downloading aarch64 wheels",
    )
    for wheel in sorted((root / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    shutil.rmtree(debs)
    done.write_text("ok\n")
    return root


def emulator_env(root: Path, cpu: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "QEMU_LD_PREFIX": str(root / "sysroot"),
            "PYTHONHOME": str(root / "sysroot" / "usr"),
            "PYTHONPATH": str(root / "site"),
            "TVM_USE_RUNTIME_LIB": "1",  # halves the emulated ``import tvm``
        }
    )
    env.pop("VIRTUAL_ENV", None)
    if cpu:
        env["QEMU_CPU"] = cpu  # e.g. cortex-a72: no dotprod, so +dotprod code dies (SIGILL)
    return env


def start_emulated_server(
    tracker_port: int,
    key: str,
    root: Path,
    tracker_host: str = "127.0.0.1",
    cpu: str | None = None,
    timeout: float = 180.0,
) -> ServiceProcess:
    """Set up (once) and start the emulated aarch64 RPC server under ``key``."""
    ensure_binfmt()
    ensure_sysroot(root)
    port = free_port()
    python = root / "sysroot" / "usr" / "bin" / "python3.11"
    cmd = rpc_server_command(str(python), port, f"{tracker_host}:{tracker_port}", key)
    service = spawn(
        f"emulated aarch64 server {key}",
        cmd,
        root / f"server-{safe_name(key)}-{port}.log",
        port,
        emulator_env(root, cpu),
    )
    wait_for_port("127.0.0.1", port, timeout, service)
    return service


def default_root() -> Path:
    from intvit.paths import cache_dir

    return cache_dir() / "emu-aarch64"
