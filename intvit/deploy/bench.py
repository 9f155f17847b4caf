"""Latency of exported libraries on an RPC device: whole-model medians through
``time_evaluator`` on the Relax VM's ``invoke_stateful``, and a per-operator profile that times
each kernel call of ``main`` (from the library's manifest) on the device.

Every remote step runs under a timeout: a device that hangs or disconnects raises
:class:`DeviceError` naming the device and the library, and never blocks a job forever.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tvm

from intvit.deploy.archcheck import check_library_arch
from intvit.deploy.manifest import KernelCall, LibraryManifest
from intvit.deploy.signature import SIGNATURE_FUNC, decode_signature, signature_mismatch
from intvit.topi import kinds


class DeviceError(RuntimeError):
    """The device failed, hung or vanished; the message names the device and the library."""


def registered_keys(summary: dict) -> set[str]:
    """The device keys with at least one server registered (free or busy) in a tracker's
    ``summary()``."""
    from intvit.deploy.rpc import servers_by_key

    keys = set(servers_by_key(summary))
    return keys | {k for k, q in summary.get("queue_info", {}).items() if q.get("free", 0)}


def wait_for_registration(tracker, key: str, timeout: float) -> None:
    """Return once a server for ``key`` is registered; DeviceError after ``timeout`` seconds
    (a supervised server restarting re-registers within a few) instead of queueing a request
    that nothing will ever serve."""
    deadline = time.monotonic() + timeout
    while True:
        keys = registered_keys(tracker.summary())
        if key in keys:
            return
        if time.monotonic() >= deadline:
            known = ", ".join(sorted(k for k in keys if k)) or "none"
            raise DeviceError(
                f"no server for key {key!r} is registered with the tracker (registered: "
                f"{known}); start one with intvit device serve/emulate-arm --key {key}"
            )
        time.sleep(0.5)


@dataclass(frozen=True)
class BenchConfig:
    """How to time. ``number`` runs per sample, ``repeat`` samples, after ``warmup`` runs."""

    warmup: int = 3
    number: int = 10
    repeat: int = 15
    min_repeat_ms: int = 0
    profile_repeat: int = 5
    step_timeout_s: float = 300.0
    queue_timeout_s: float = 900.0
    #: how long a key may have no server registered before the bench gives up
    registration_timeout_s: float = 15.0
    session_timeout_s: float = 1800.0

    @classmethod
    def steady(cls, queue_timeout_s: float = 900.0) -> BenchConfig:
        """Samples for :attr:`Latency.steady_ms`: 20 of at least 25 ms each (TVM raises
        ``number`` until a sample lasts that long), half a second or more of the device's
        time; the fastest is taken out of the neighbours' way (repeat it seconds apart for
        stretches of interference longer than that)."""
        return cls(
            warmup=10, number=1, repeat=20, min_repeat_ms=25, queue_timeout_s=queue_timeout_s
        )

    def __post_init__(self) -> None:
        for name, low in (("warmup", 0), ("number", 1), ("repeat", 1), ("profile_repeat", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)} must be >= {low}")
        for name in (
            "step_timeout_s",
            "queue_timeout_s",
            "registration_timeout_s",
            "session_timeout_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a finite number of seconds > 0")


@dataclass
class Latency:
    """Samples of one model's latency (ms per run) and where they were taken."""

    label: str
    where: str
    samples_ms: list[float]
    note: str = ""

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def steady_ms(self) -> float:
        """The fastest sample: the latency with nothing else in the way. On a shared host the
        median drifts with the neighbours (on this project's 2-core cloud VM a digits ViT's
        calls ran up to 1.7x slower for stretches of 0.1 s to a few seconds at random), while
        the fastest of samples spread over time repeats within a few percent; this is the
        figure to rank models by (``BenchConfig.steady()`` spreads the samples)."""
        return float(min(self.samples_ms))

    @property
    def spread_ms(self) -> tuple[float, float]:
        """(10th, 90th) percentile."""
        lo, hi = np.percentile(self.samples_ms, [10, 90])
        return float(lo), float(hi)

    def as_dict(self) -> dict:
        lo, hi = self.spread_ms
        return {
            "label": self.label,
            "where": self.where,
            "median_ms": self.median_ms,
            "steady_ms": self.steady_ms,
            "p10_ms": lo,
            "p90_ms": hi,
            "samples_ms": list(self.samples_ms),
            "note": self.note,
        }


#: Operator categories of the per-op profile, matched on kernel function names in order.
CATEGORIES = (
    ("gemm", ("dense", "matmul", "qkv", "fc1", "fc2", "proj", "conv2d", "linear", "head")),
    ("softmax", ("softmax",)),
    ("gelu", ("gelu", "relu", "erf")),
    ("layernorm", ("layernorm", "layer_norm")),
    ("requantize", ("rq", "requant")),
)


#: The profile's category of each kernel kind intvit emits (:mod:`intvit.topi.kinds`).
CATEGORY_OF_KIND = {
    kinds.PACKED_GEMM: "gemm",
    kinds.LOW_RANK_GEMM: "gemm",
    kinds.GEMM: "gemm",
    kinds.SOFTMAX: "softmax",
    kinds.GELU: "gelu",
    kinds.LAYERNORM: "layernorm",
    kinds.REQUANTIZE: "requantize",
    kinds.SCORES: "requantize",
    kinds.RESIDUAL: "residual",
    kinds.DATA: "other",
}


def categorize(func: str, kind: str | None = None) -> str:
    """The profile category of a kernel: from its kind where intvit emitted it, else (TVM's
    FP32 kernels, which carry no kind) from the operator names TVM gives them."""
    if kind is not None:
        return CATEGORY_OF_KIND.get(kind, "other")
    name = func.lower()
    for category, keys in CATEGORIES:
        if any(k in name for k in keys):
            return category
    return "other"


@dataclass
class OpTime:
    """One kernel of the profile: how many calls ``main`` makes and their summed time."""

    func: str
    category: str
    calls: int
    total_ms: float


#: Errors of a session whose server is gone (crashed, killed or unreachable).
_DEVICE_GONE = (tvm.error.RPCError, ConnectionError, EOFError, BrokenPipeError)


#: What TVM's RPC says when the server on the other end shut down mid-call.
_GONE_MARKERS = ("kShutdown", "connection reset", "Broken pipe", "socket closed")


def device_gone(err: BaseException) -> bool:
    """Whether ``err`` says the RPC server went away (its type, or TVM's ``Check failed ...
    code=kShutdown`` text, which comes as a generic TVM error)."""
    text = str(err)
    return isinstance(err, _DEVICE_GONE) or any(m in text for m in _GONE_MARKERS)


def call_with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; DeviceError if it does not finish within ``timeout``."""
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as err:  # relayed to the caller's thread below
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DeviceError(f"{what}: no answer within {timeout:.0f}s (device hung?)")
    if "error" in box:
        err = box["error"]
        if isinstance(err, DeviceError | ValueError):
            raise err
        if device_gone(err):
            raise DeviceError(
                f"{what} failed: the device went away (its server shut down: the library "
                "crashed it, or it was stopped)"
            ) from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeviceError(f"{what} failed: {first}") from err
    return box.get("value")


def _input_array(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def _stateful_vm(lib, dev, image: np.ndarray):
    """A Relax VM on ``dev`` with ``image`` set as ``main``'s input (``invoke_stateful``)."""
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(lib, dev)
    vm.set_input("main", tvm.runtime.tensor(np.ascontiguousarray(image), dev))
    return vm


@dataclass
class DeviceSession:
    """One RPC session with a device from the tracker, held for several measurements."""

    tracker: Any
    key: str
    config: BenchConfig = field(default_factory=BenchConfig)
    session: Any = None
    arch: str | None = None
    cpu: str | None = None
    #: Libraries loaded in this session. Each is uploaded once: writing over a library the
    #: server has already loaded corrupts its mapping and kills the server.
    modules: dict[str, Any] = field(default_factory=dict)
    #: libraries whose manifest was checked against their compiled input signature
    checked: set[str] = field(default_factory=set)

    def open(self) -> DeviceSession:
        cfg = self.config
        wait_for_registration(self.tracker, self.key, cfg.registration_timeout_s)
        self.session = call_with_timeout(
            lambda: self.tracker.request(self.key, session_timeout=cfg.session_timeout_s),
            cfg.queue_timeout_s,
            f"waiting for device {self.key!r} in the tracker's queue",
        )
        self.arch, self.cpu = self._probe()
        return self

    def _probe(self) -> tuple[str | None, str | None]:
        """The device's architecture (and CPU where its TVM runtime has LLVM). A runtime-only
        Linux device is read from the ELF header of its server's executable; a device that
        offers neither (iOS) stays unknown."""
        try:
            triple = str(self.session.get_function("target.llvm_get_system_triple")())
            cpu = str(self.session.get_function("tvm.codegen.llvm.GetHostCPUName")())
            return triple.split("-")[0], cpu
        except AttributeError:  # a runtime-only device: no LLVM functions
            pass
        try:
            from intvit.deploy.archcheck import arch_of_header

            head = bytes(self.session.download("/proc/self/exe"))[:64]
            return arch_of_header(head), None
        except (RuntimeError, OSError):  # TVM errors; no /proc (iOS): the arch stays unknown
            return None, None

    def _step(self, fn: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        return call_with_timeout(fn, timeout or self.config.step_timeout_s, what)

    def load(self, library: str | Path):
        """Upload ``library`` after checking its architecture; the remote module."""
        library = Path(library)
        if str(library.resolve()) in self.modules:
            return self.modules[str(library.resolve())]
        if library.name in {Path(p).name for p in self.modules}:
            raise ValueError(f"another library named {library.name!r} is loaded in this session")
        if self.arch is not None:
            check_library_arch(library, self.arch, self.key)
        what = f"device {self.key!r} loading {library.name!r}"

        def upload():
            self.session.upload(str(library))
            return self.session.load_module(library.name)

        module = self._step(upload, what)
        self.modules[str(library.resolve())] = module
        return module

    def check_manifest(self, library: str | Path, manifest: LibraryManifest) -> None:
        """Check the manifest's input against the one compiled into ``library`` (read on the
        device, before ``main`` ever runs): a ValueError naming the mismatch, instead of the
        empty RPC error a wrong input gets from ``main``. Libraries from before the signature
        (no :data:`SIGNATURE_FUNC`) are not checked."""
        library = Path(library)
        key = str(library.resolve())
        if key in self.checked:
            return
        lib = self.load(library)

        def read():
            from tvm import relax

            vm = relax.VirtualMachine(lib, self.session.cpu())
            try:
                func = vm[SIGNATURE_FUNC]
            except (AttributeError, KeyError, RuntimeError):  # an older library
                return None
            return func().numpy()

        values = self._step(read, f"device {self.key!r} reading {library.name!r}'s input")
        if values is not None:
            expected = decode_signature(values)
            problem = signature_mismatch(expected, manifest.input_shape, manifest.input_dtype)
            if problem:
                raise ValueError(
                    f"the manifest of {library.name!r} does not match the library: {problem} "
                    "(edited, or from another export? intvit compile writes both)"
                )
        self.checked.add(key)

    def run(self, library: str | Path, image: np.ndarray) -> np.ndarray:
        """The outputs of ``main`` on ``image`` (for checking results on the device)."""

        library = Path(library)
        lib = self.load(library)

        def run():
            vm = _stateful_vm(lib, self.session.cpu(), image)
            vm.invoke_stateful("main")
            return vm.get_outputs("main").numpy()

        return self._step(run, f"device {self.key!r} running {library.name!r}")

    def measure(self, library: str | Path, manifest: LibraryManifest, label: str) -> Latency:
        """Median latency of ``main`` (input from the manifest) over ``repeat`` samples."""

        cfg, library = self.config, Path(library)
        self.check_manifest(library, manifest)
        lib = self.load(library)
        what = f"device {self.key!r} running {library.name!r}"

        def run():
            dev = self.session.cpu()
            image = _input_array(manifest.input_shape, manifest.input_dtype)
            vm = _stateful_vm(lib, dev, image)
            for _ in range(cfg.warmup):
                vm.invoke_stateful("main")
            timer = vm.time_evaluator(
                "invoke_stateful",
                dev,
                number=cfg.number,
                repeat=cfg.repeat,
                min_repeat_ms=cfg.min_repeat_ms,
            )
            return [float(s) * 1e3 for s in timer("main").results]

        return Latency(label, f"rpc:{self.key}", self._step(run, what))

    def profile(self, library: str | Path, manifest: LibraryManifest) -> list[OpTime]:
        """Time every distinct kernel call of ``main`` on the device, from the kernel library
        beside ``library`` (zero-filled arguments: the kernels' running time does not depend
        on the values)."""
        import tvm

        cfg, library = self.config, Path(library)
        if manifest.kernels_library is None:
            raise ValueError(
                f"{library.name!r} was exported without its kernel library: per-operator "
                "profiles need intvit compile --profile (or bench the .safetensors model)"
            )
        lib = self.load(library.with_name(manifest.kernels_library))
        what = f"device {self.key!r} profiling {library.name!r}"
        counts: dict[KernelCall, int] = {}
        for call in manifest.calls:
            counts[call] = counts.get(call, 0) + 1

        def run():
            dev = self.session.cpu()
            per_func: dict[str, list[float]] = {}
            for call, n in counts.items():
                args = [tvm.runtime.tensor(np.zeros(s, dtype=d), dev) for s, d in call.args]
                timer = lib.time_evaluator(
                    call.func, dev, number=cfg.number, repeat=cfg.profile_repeat
                )
                ms = float(np.median(timer(*args).results)) * 1e3
                per_func.setdefault(call.func, [0, 0.0])
                per_func[call.func][0] += n
                per_func[call.func][1] += n * ms
            return per_func

        per_func = self._step(run, what, cfg.step_timeout_s * 2)
        kind_of = {call.func: call.kind for call in counts}
        ops = [
            OpTime(f, categorize(f, kind_of.get(f)), int(c), float(t))
            for f, (c, t) in per_func.items()
        ]
        return sorted(ops, key=lambda o: -o.total_ms)

    def close(self) -> None:
        from intvit.deploy.rpc import release_sessions

        self.modules.clear()
        self.checked.clear()
        self.session = None
        release_sessions()  # the device is free for the next request at once

    def __enter__(self) -> DeviceSession:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def category_totals(ops: list[OpTime]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for op in ops:
        totals[op.category] = totals.get(op.category, 0.0) + op.total_ms
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
