"""``intvit device``: an RPC tracker, a device server on this host or on the emulated aarch64
device, and the tracker's queues. The services run until interrupted; a crashed server is
restarted and reported."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from intvit.api import say_now


@dataclass(frozen=True, kw_only=True)
class DeviceQueue:
    """One device key at a tracker: its free and busy servers and the jobs waiting for one."""

    key: str
    free: int
    busy: int
    waiting: int


def device_queues(address: str) -> list[DeviceQueue]:
    """The keys registered at the tracker ``HOST:PORT``, sorted by key."""
    from intvit.deploy import rpc

    host, port = rpc.parse_address(address)
    summary = rpc.connect_tracker(host, port).summary()
    servers = rpc.servers_by_key(summary)
    queues = summary.get("queue_info", {})
    rows = []
    for key in sorted(set(queues) | set(servers)):
        queue = queues.get(key, {})
        free = int(queue.get("free", 0))
        busy = max(servers.get(key, 0) - free, 0)
        rows.append(DeviceQueue(key=key, free=free, busy=busy, waiting=queue.get("pending", 0)))
    return rows


def format_queues(rows: list[DeviceQueue]) -> str:
    lines = [f"{'key':<20}{'free':>6}{'busy':>6}{'waiting jobs':>14}"]
    lines += [f"{r.key:<20}{r.free:>6}{r.busy:>6}{r.waiting:>14}" for r in rows]
    return "\n".join(lines)


def run_tracker(port: int | None, host: str, say: Callable[[str], None] = say_now) -> int:
    """Serve a tracker until Ctrl-C (exit status 0) or until it dies (1, its log said)."""
    from intvit.deploy import rpc

    service = rpc.start_tracker(port, host=host)
    try:
        say(f"RPC tracker on {host}:{service.port} (Ctrl-C stops it)")
        while service.alive():
            time.sleep(1)
        print(f"{service.name} exited:\n{service.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        service.stop()


def run_device(
    tracker: str,
    key: str,
    emulate_arm: bool,
    cpu: str | None = None,
    say: Callable[[str], None] = say_now,
) -> int:
    """Serve a device under ``key`` at the tracker ``HOST:PORT`` until Ctrl-C: this host, or
    (``emulate_arm``) the emulated aarch64 device with QEMU's core ``cpu``. A crashed server
    is restarted and said."""
    from intvit.deploy import rpc

    host, port = rpc.parse_address(tracker)
    rpc.connect_tracker(host, port)  # a clear error now if the tracker is not there
    if emulate_arm:
        from intvit.deploy.emulator import default_root, start_emulated_server

        say("setting up the emulated aarch64 device (first run downloads ~530 MB) ...")

        def start() -> rpc.ServiceProcess:
            return start_emulated_server(port, key, default_root(), host, cpu)

    else:

        def start() -> rpc.ServiceProcess:
            return rpc.start_host_server(port, key, tracker_host=host)

    def on_crash(report: rpc.CrashReport) -> None:
        say(f"{report.message()} (now on port {supervisor.service.port})")

    supervisor = rpc.Supervisor(start)
    try:
        supervisor.watch(on_crash=on_crash)
        service = supervisor.service
        say(f"{service.name} on 127.0.0.1:{service.port}, key {key!r} (Ctrl-C stops it)")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        supervisor.stop()
