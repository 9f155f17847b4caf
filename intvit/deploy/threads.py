"""How many threads TVM's runtime gets on this machine.

TVM sizes its thread pool at first use from ``TVM_NUM_THREADS`` (or ``OMP_NUM_THREADS``), and
without either takes half the logical CPUs on x86, on the assumption that every core runs two
hardware threads. On a machine without SMT (cloud VMs, this project's 2-core host) that leaves
half the cores idle: TVM ran one thread on two cores here. :func:`use_physical_cores` sets
``TVM_NUM_THREADS`` to the physical cores this process may run on, unless the user chose.
It must run before TVM's pool starts (the first parallel kernel), so it is called where a
runtime starts (the CLI, loading a library, a local VM or timer, an RPC server, each
benchmark script); every peer of a benchmark gets the same count (``tvm.runtime.num_threads()``).
"""

from __future__ import annotations

import os
from pathlib import Path

_SYS_CPU = Path("/sys/devices/system/cpu")


def usable_cpus() -> set[int]:
    """The logical CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(sys_cpu: Path = _SYS_CPU) -> int:
    """Distinct physical cores among the usable CPUs (SMT siblings counted once); the logical
    count where the topology cannot be read (not Linux)."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


def use_physical_cores() -> int | None:
    """Set ``TVM_NUM_THREADS`` to :func:`physical_cores` unless it (or ``OMP_NUM_THREADS``)
    is set; the count set, or None if the user's setting stands."""
    if os.environ.get("TVM_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = physical_cores()
    os.environ["TVM_NUM_THREADS"] = str(cores)
    return cores
