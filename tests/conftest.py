"""Shared fixtures: the host target, a compile-and-run helper for TE kernels, and a marker
that finds every process a command under test started."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import tvm

from intvit.deploy.targets import get_preset
from intvit.deploy.threads import use_physical_cores
from intvit.schedules.compile import compile_te

use_physical_cores()  # before any test starts TVM's thread pool


@pytest.fixture(scope="session")
def host_target() -> tvm.target.Target:
    return get_preset("host").tvm_target()


class JobMarker:
    """An environment to start a command with, whose marker every process it starts inherits
    (its children, their workers, a daemon it forks): :meth:`alive` finds those still
    running, however they were reparented."""

    def __init__(self) -> None:
        self.marker = f"INTVIT_TEST_MARK=intvit-test-{uuid.uuid4()}"
        name, value = self.marker.split("=", 1)
        self.env = {**os.environ, name: value}

    def alive(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(") ", 1)[-1][:1]
            except OSError:
                continue
            if self.marker.encode() in environ and state != "Z":
                found.append(int(entry.name))
        return found


@pytest.fixture
def job_marker() -> JobMarker:
    return JobMarker()


class KernelRunner:
    """Compiles a TE kernel once and runs it on many inputs of its shape."""

    def __init__(self, inputs, outputs, target, extra=(), vectorize=False):
        self.module = compile_te([*inputs, *extra, *outputs], target, vectorize=vectorize)
        self.outputs = outputs

    def __call__(self, *arrays: np.ndarray, extra_arrays=()) -> np.ndarray:
        out = self.outputs[0]
        shape = tuple(int(d) for d in out.shape)
        dev_out = tvm.runtime.tensor(np.zeros(shape, dtype=str(out.dtype)))
        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (*arrays, *extra_arrays)]
        self.module["main"](*args, dev_out)
        return dev_out.numpy()


@pytest.fixture(scope="session")
def runner_factory(host_target):
    def make(inputs, outputs, extra=(), vectorize=False):
        return KernelRunner(inputs, outputs, host_target, extra, vectorize)

    return make


def edge_inputs(shape, lo, hi, rng, dtype):
    """Random inputs plus the edge cases every kernel is checked on."""
    shape = tuple(shape)
    cases = {
        "random": rng.integers(lo, hi + 1, size=shape, dtype=np.int64),
        "all_min": np.full(shape, lo, dtype=np.int64),
        "all_max": np.full(shape, hi, dtype=np.int64),
        "constant_rows": np.broadcast_to(
            rng.integers(lo, hi + 1, size=(*shape[:-1], 1), dtype=np.int64), shape
        ).copy(),
        "gaussian": np.clip(np.round(rng.normal(0, (hi - lo) / 12, size=shape)), lo, hi),
    }
    outlier = rng.integers(lo // 16, hi // 16 + 1, size=shape, dtype=np.int64)
    outlier[..., shape[-1] // 2] = hi
    cases["outlier_channel"] = outlier
    return {name: a.astype(dtype) for name, a in cases.items()}
