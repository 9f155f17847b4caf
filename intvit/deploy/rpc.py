"""RPC plumbing on top of TVM's tracker and servers: start/stop them as process groups (the
server forks a child that would otherwise keep the port), pick free ports, request devices,
and run a Relax VM library remotely (``set_input`` + ``invoke_stateful``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    """A background service in its own process group; ``stop`` ends the whole group."""

    name: str
    proc: subprocess.Popen
    log: Path
    port: int

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def default_log_dir() -> Path:
    """Where services write their logs by default: ``<cache>/logs``, a folder the user owns
    (never a shared ``/tmp``)."""
    from intvit.paths import cache_dir

    path = cache_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_log(path: Path) -> int:
    """A new log file at ``path``, opened for writing without following a symlink there (a
    planted link is refused, not written through): the file descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as err:
        raise ValueError(f"cannot open the log {str(path)!r}: {err.strerror}") from None


#: The guard every service runs under (``python -I -c GUARD CMD...``): it starts ``CMD`` in
#: its own process group and, when it gets SIGTERM/SIGINT/SIGHUP or its parent dies (even by
#: SIGKILL: Linux ``PR_SET_PDEATHSIG``), takes the whole group down, workers the service
#: forked included. ``-I``: a service's environment (the emulated device's PYTHONHOME) does
#: not reach the guard's own interpreter.
GUARD = r"""
import ctypes, os, signal, subprocess, sys, time
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
child = subprocess.Popen(sys.argv[1:])
def stop(signum, frame):
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, stop)
if os.getppid() == 1:  # the parent died before the guard was armed
    stop(None, None)
sys.exit(child.wait())
"""


def guarded(cmd: list[str]) -> list[str]:
    """``cmd`` run under :data:`GUARD` by this interpreter."""
    return [sys.executable, "-I", "-c", GUARD, *cmd]


def spawn(name: str, cmd: list[str], log: Path, port: int, env: dict | None = None):
    """Start ``cmd`` under the guard in a process group of its own (which the guard takes down
    with it), its output in the new file ``log``."""
    fd = open_log(log)
    try:
        proc = subprocess.Popen(
            guarded(cmd), stdout=fd, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    finally:
        os.close(fd)
    return ServiceProcess(name, proc, log, port)


def check_port(port: int, host: str = "127.0.0.1", span: int = 1) -> int:
    """``port`` if ``port .. port + span - 1`` are valid TCP ports that nothing on ``host``
    listens on; ValueError naming the port otherwise (before a service is spawned)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535 - span + 1:
        raise ValueError(f"port {port!r} must be an integer in [1, {65535 - span + 1}]")
    for p in range(port, port + span):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, p))
            except OSError as err:
                raise ValueError(f"port {p} on {host} is taken: {err.strerror}") from None
    return port


def wait_for_port(host: str, port: int, timeout: float, service: ServiceProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"{service.name} exited early:\n{service.log_tail()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def start_tracker(
    port: int | None = None, log_dir: Path | None = None, host: str = "127.0.0.1"
) -> ServiceProcess:
    """A TVM RPC tracker on ``host`` (``0.0.0.0`` lets other machines in; a free port unless
    given: a given one that is taken or out of range is a ValueError), logging into
    ``log_dir`` (default :func:`default_log_dir`)."""
    port = free_port() if port is None else check_port(port, host, span=2)
    log = (log_dir or default_log_dir()) / f"tracker-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "tvm.exec.rpc_tracker",
        "--host",
        host,
        "--port",
        str(port),
        "--port-end",
        str(port + 1),
        "--silent",
    ]
    service = spawn("rpc tracker", cmd, log, port)
    wait_for_port("127.0.0.1", port, 60, service)
    return service


def rpc_server_command(python: str, port: int, tracker: str, key: str) -> list[str]:
    """TVM's RPC server on 127.0.0.1:``port``, registered with ``tracker`` under ``key``."""
    return [
        python,
        "-m",
        "tvm.exec.rpc_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--port-end",
        str(port + 1),
        "--tracker",
        tracker,
        "--key",
        key,
    ]


def start_host_server(
    tracker_port: int, key: str, log_dir: Path | None = None, tracker_host: str = "127.0.0.1"
) -> ServiceProcess:
    """This machine's CPU as an RPC device registered under ``key``."""
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()  # the server inherits TVM_NUM_THREADS
    port = free_port()
    log = (log_dir or default_log_dir()) / f"server-{safe_name(key)}-{port}.log"
    cmd = rpc_server_command(sys.executable, port, f"{tracker_host}:{tracker_port}", key)
    service = spawn(f"rpc server {key}", cmd, log, port)
    wait_for_port("127.0.0.1", port, 60, service)
    return service


def safe_name(text: str) -> str:
    """``text`` with every character but letters, digits, ``-`` and ``_`` replaced by ``_``
    (a key in a file name: no ``/``, no ``..``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:64] or "_"


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"tracker address {address!r} must be HOST:PORT")
    return host, int(port)


def connect_tracker(host: str, port: int):
    """A tracker session; ValueError naming the address when nothing answers."""
    from tvm import rpc

    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as err:
        raise ValueError(f"cannot reach the RPC tracker at {host}:{port}: {err}") from None
    return rpc.connect_tracker(host, port)


def servers_by_key(summary: dict) -> dict[str, int]:
    """The RPC servers a tracker's ``summary()`` lists (free or busy), counted per device key:
    the exact key (the tracker's ``server:`` prefix removed: ``aarch64`` never counts
    ``emu-aarch64``), each server address once."""
    addrs: dict[str, set] = {}
    for i, server in enumerate(summary.get("server_info", [])):
        key = str(server.get("key", "")).removeprefix("server:")
        addrs.setdefault(key, set()).add(tuple(server.get("addr") or (i,)))
    return {key: len(found) for key, found in addrs.items()}


def servers_for_key(summary: dict, key: str) -> int:
    """How many RPC servers a tracker's ``summary()`` lists under ``key`` (free or busy)."""
    free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
    return max(servers_by_key(summary).get(key, 0), int(free))


def wait_for_device(tracker, key: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = tracker.summary()
        if any(q == key and s.get("free", 0) > 0 for q, s in summary.get("queue_info", {}).items()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no device with key {key!r} registered with the tracker in {timeout:.0f}s")


@dataclass
class RemoteRun:
    outputs: np.ndarray
    device_key: str
    library: str


def run_remote(
    tracker, key: str, library: str | Path, image: np.ndarray, session_timeout: float = 600.0
) -> RemoteRun:
    """Upload ``library`` to a device ``key`` and run its ``main`` on ``image``; the device is
    free again when this returns."""
    import tvm
    from tvm import relax

    library = Path(library)

    def run() -> np.ndarray:
        remote = tracker.request(key, session_timeout=session_timeout)
        remote.upload(str(library))
        lib = remote.load_module(library.name)
        dev = remote.cpu()
        vm = relax.VirtualMachine(lib, dev)
        vm.set_input("main", tvm.runtime.tensor(np.ascontiguousarray(image), dev))
        vm.invoke_stateful("main")
        return vm.get_outputs("main").numpy()

    outputs = run()
    release_sessions()
    return RemoteRun(outputs, key, library.name)


def release_sessions() -> None:
    """Close RPC sessions nothing refers to any more. A session ends when its last object
    (module, VM, remote tensor) is freed, and some of those sit in reference cycles that only
    the garbage collector frees: until then the tracker counts the device as busy and the next
    request for it waits (up to the session timeout)."""
    import gc

    gc.collect()


_CHILD_EXIT = re.compile(r"exited unsuccessfully with error code (-?\d+)")
_LOADED = re.compile(r"load_module (\S+)")


@dataclass
class CrashReport:
    """Why a server died: the worker's exit code (negative: the signal) and the last library
    it loaded, which is almost always the one that killed it."""

    service: str
    exit_code: int | None
    library: str | None

    def message(self) -> str:
        how = "died"
        if self.exit_code is not None and self.exit_code < 0:
            how = f"was killed by {signal.Signals(-self.exit_code).name}"
        elif self.exit_code is not None:
            how = f"exited with code {self.exit_code}"
        lib = f"while running {Path(self.library).name!r}" if self.library else "(no library)"
        return f"{self.service} {how} {lib}; restarted"


def crash_report(service: ServiceProcess) -> CrashReport:
    log = service.log_tail(400)
    codes = _CHILD_EXIT.findall(log)
    loads = _LOADED.findall(log)
    code = int(codes[-1]) if codes else service.proc.returncode
    return CrashReport(service.name, code, loads[-1] if loads else None)


class Supervisor:
    """Keeps an RPC server up. A library that crashes takes TVM's server down with it; the
    supervisor starts it again (same key, new port) and records which library killed it."""

    def __init__(self, start: Callable[[], ServiceProcess]):
        self._start = start
        self.service = start()
        self.crashes: list[CrashReport] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def healthy(self) -> bool:
        """Alive and still serving. TVM's server process outlives a crashed worker (its listen
        thread dies with the worker's error, its process waits on a pipe), so the log says
        more than the process table."""
        return self.service.alive() and not _CHILD_EXIT.search(self.service.log_tail(400))

    def check(self) -> CrashReport | None:
        """Restart the server if it died; the crash, or None when it is up."""
        if self.healthy():
            return None
        report = crash_report(self.service)
        self.service.stop()  # whatever is left of its process group
        self.service = self._start()
        self.crashes.append(report)
        return report

    def watch(self, interval: float = 0.5, on_crash: Callable[[CrashReport], None] | None = None):
        """Check in a background thread until :meth:`stop`."""

        def loop():
            while not self._stop.wait(interval):
                try:
                    report = self.check()
                except Exception as err:  # could not restart: say so and stop watching
                    print(f"supervisor: cannot restart {self.service.name}: {err}", flush=True)
                    return
                if report is not None and on_crash is not None:
                    on_crash(report)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.service.stop()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
