"""What a search measures of a subnet through intvit's own pipeline: the compiled integer-only
library's latency on an RPC device (checked bit-exact against the reference forward first)
and its planned memory; both cached by arch.

Latency: the subnet is extracted, calibrated on a few validation images, compiled for the
target preset, exported, uploaded to a device of the key, checked bit-exact once and timed
with intvit's bench in rounds through every subnet being measured; its latency is the fastest
of its rounds, each the fastest of 20 samples of 25 ms or more (``Latency.steady_ms``). The
median of back-to-back samples, as before, repeated within 17-22% (MAPE of two measurements
of the same subnets) on this project's shared 2-core host, whose neighbours slow a library
up to 1.7x for stretches of 0.1 s to a few seconds; a latency predictor cannot come closer
to the device than the device comes to itself. Measurements are spread over every free
device of the key on the tracker, one worker per device; each round's figure is written to
the cache at once, so a job that queues or loses a device loses nothing already measured.

Cache: ``<cache>/nas/latency-<key>-<preset>-<STATISTIC>.json``,
``{arch_hash: {"ms", "rounds_ms", "arch"}}`` where ``arch_hash`` is the SHA-256 of the arch's
JSON (stable across runs, not Python's ``hash``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.paths import write_text_atomic
from intvit.quant.arch import VitArch

#: How a cached latency was taken; part of the cache's file name, so that figures taken another
#: way (the median of 10 samples of 20 runs, before) are never mixed with these.
STATISTIC = "steady5rounds"

#: Rounds of timing per subnet (:meth:`LatencyMeter.measure_all`).
ROUNDS = 5


def arch_hash(arch: VitArch) -> str:
    return hashlib.sha256(json.dumps(arch.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


class JsonCache:
    """A dict persisted as JSON, rewritten atomically after each put (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict = {}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except json.JSONDecodeError:
                bad = path.with_suffix(".corrupt.json")
                path.replace(bad)
                print(f"warning: {path} was corrupt; moved to {bad.name}, starting afresh")

    def get(self, key: str):
        with self.lock:
            return self.data.get(key)

    def put(self, key: str, value) -> None:
        with self.lock:
            self.data[key] = value
            write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def default_cache_dir() -> Path:
    from intvit.paths import cache_dir

    return cache_dir() / "nas"


def int_model_of(float_model, calib: np.ndarray, config=None):
    from intvit.quant.calibrate import calibrate

    return calibrate(float_model, calib, config)


@dataclass
class Measurement:
    arch: VitArch
    ms: float
    bit_exact: bool
    cached: bool


class LatencyMeter:
    """Measures subnets' integer-only latency on the devices of ``key`` (see the module)."""

    def __init__(
        self,
        tracker: str,
        key: str,
        preset: str,
        calib: np.ndarray,
        cache_dir: Path | None = None,
        rounds: int = ROUNDS,
        round_gap_s: float = 2.0,
    ) -> None:
        from intvit.deploy.bench import BenchConfig
        from intvit.deploy.rpc import parse_address

        if rounds < 1:
            raise ValueError(f"rounds={rounds} must be >= 1")
        self.tracker, self.key, self.preset = tracker, key, preset
        self.host, self.port = parse_address(tracker)
        self.calib = calib
        self.rounds, self.round_gap_s = rounds, round_gap_s
        self.config = BenchConfig.steady(queue_timeout_s=600)
        folder = cache_dir or default_cache_dir()
        self.cache = JsonCache(folder / f"latency-{key}-{preset}-{STATISTIC}.json")

    def devices(self) -> int:
        """Servers registered for the key (free or busy); at least 1 worker."""
        from intvit.deploy.rpc import connect_tracker, servers_for_key

        summary = connect_tracker(self.host, self.port).summary()
        servers = servers_for_key(summary, self.key)
        if servers == 0 and self.key not in summary.get("queue_info", {}):
            raise ValueError(f"no device with key {self.key!r} is registered at {self.tracker}")
        return max(1, servers)

    def _rounds_of(self, arch: VitArch) -> list[float]:
        hit = self.cache.get(arch_hash(arch))
        return [] if hit is None else [float(x) for x in hit.get("rounds_ms", [])]

    def cached(self, arch: VitArch) -> float | None:
        """The cached latency of ``arch`` once all its rounds are measured."""
        done = self._rounds_of(arch)
        return min(done) if len(done) >= self.rounds else None

    def measure_all(
        self,
        models: list[tuple[VitArch, Callable]],
        on_done: Callable[[Measurement], None] | None = None,
    ) -> list[Measurement]:
        """Latency of every ``(arch, make_float_model)``: cached ones at once, the rest
        compiled, checked bit-exact and timed in ``rounds`` rounds over all of them, one
        worker per device of the key; a subnet's latency is the fastest of its rounds.

        Rounds, not one long sample: the neighbours of a shared host slow a library by up to
        1.7x for stretches longer than a second, so back-to-back samples of one library can
        all fall in one; rounds through every library, at least ``round_gap_s`` apart, put
        each subnet's samples far apart in time. Each round's figure is cached as it comes
        (``rounds_ms``), so an interrupted job resumes with the rounds it has."""
        results, todo = [], []
        for arch, make in models:
            ms = self.cached(arch)
            if ms is not None:
                m = Measurement(arch, ms, True, True)
                results.append(m)
                if on_done:
                    on_done(m)
            else:
                todo.append((arch, make))
        if not todo:
            return results
        workers = min(self.devices(), len(todo))
        # Every library is compiled first, here, one after another (TVM's BlockBuilder is not
        # thread-safe, and a compile beside a measurement on the same host would slow it),
        # then the workers time them, one per device.
        with tempfile.TemporaryDirectory() as tmp:
            built = [
                (arch, *self._build(make, Path(tmp) / f"subnet{i}.so"))
                for i, (arch, make) in enumerate(todo)
            ]
            done = [self._rounds_of(arch) for arch, _, _ in built]
            for r in range(self.rounds):
                start = time.monotonic()
                jobs = [i for i, d in enumerate(done) if len(d) < self.rounds]
                with ThreadPoolExecutor(workers) as pool:
                    futures = {
                        pool.submit(self._time_retried, *built[i], not done[i]): i for i in jobs
                    }
                    for future in as_completed(futures):
                        i = futures[future]
                        arch = built[i][0]
                        done[i].append(future.result())
                        entry = {"ms": min(done[i]), "rounds_ms": done[i], "arch": arch.to_dict()}
                        self.cache.put(arch_hash(arch), entry)
                        if len(done[i]) >= self.rounds:
                            m = Measurement(arch, min(done[i]), True, False)
                            results.append(m)
                            if on_done:
                                on_done(m)
                if r + 1 < self.rounds:
                    time.sleep(max(0.0, self.round_gap_s - (time.monotonic() - start)))
        return results

    def _build(self, make: Callable, path: Path):
        from intvit.deploy.compile import compile_int_model, export

        model = int_model_of(make(), self.calib)
        return model, export(compile_int_model(model, self.preset), self.preset, path)

    def _time_retried(self, arch: VitArch, model, lib: Path, check: bool) -> float:
        """:meth:`_time`, once more (on whichever device is free then) if the device it got
        failed or went away; what the other workers measured is in the cache already."""
        from intvit.deploy.bench import DeviceError

        try:
            return self._time(arch, model, lib, check)
        except DeviceError as err:
            print(f"warning: measuring subnet {arch_hash(arch)} failed ({err}); retrying")
            return self._time(arch, model, lib, check)

    def _time(self, arch: VitArch, model, lib: Path, check: bool) -> float:
        """One round: the library's steady latency (ms) on a device of the key, after
        checking it bit-exact against the reference forward when ``check``."""
        from intvit.deploy.bench import DeviceSession
        from intvit.deploy.manifest import read_manifest
        from intvit.deploy.rpc import connect_tracker
        from intvit.quant.reference import reference_forward

        manifest = read_manifest(lib)
        tracker = connect_tracker(self.host, self.port)
        with DeviceSession(tracker, self.key, self.config) as session:
            if check:
                image = np.random.default_rng(1).integers(-128, 128, manifest.input_shape, np.int8)
                if not np.array_equal(session.run(lib, image), reference_forward(model, image)):
                    raise AssertionError(
                        f"subnet {arch_hash(arch)} is not bit-exact on {self.key!r}"
                    )
            return float(session.measure(lib, manifest, "subnet").steady_ms)


class MemoryMeter:
    """The compiled integer library's planned activation memory plus weight bytes for the
    target preset (lowered, not built), cached by arch."""

    def __init__(self, preset: str, calib: np.ndarray, cache_dir: Path | None = None) -> None:
        self.preset, self.calib = preset, calib
        folder = cache_dir or default_cache_dir()
        self.cache = JsonCache(folder / f"memory-{preset}.json")

    def bytes(self, arch: VitArch, make: Callable) -> int:
        key = arch_hash(arch)
        hit = self.cache.get(key)
        if hit is not None:
            return int(hit["activation_bytes"]) + int(hit["weight_bytes"])
        from intvit.deploy.compile import plan_memory

        report = plan_memory(int_model_of(make(), self.calib[:8]), self.preset)
        self.cache.put(key, {**report.as_dict(), "arch": arch.to_dict()})
        return report.activation_bytes + report.weight_bytes
