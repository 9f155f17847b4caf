"""What each target core can issue per cycle, for the resource bound of a micro-kernel's inner
loop (:mod:`intvit.analysis.inner_loop`): its int8 multiply pipes, vector pipes, load ports and
issue width, and where each figure comes from.

These are published figures, not measurements made here (no ARM machine is reachable from
this project's hosts). A bound from them says what the loop's instruction mix allows on that
core; it is not a latency.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoreModel:
    """One core's throughput resources (per cycle, steady state).

    - ``mul_pipes``: the pipes that issue each int8 multiply instruction a micro-kernel uses
      (``sdot``, ``smmla``, ``smull``, ``vpmaddwd``, ``vpmaddubsw``), by mnemonic;
    - ``vector_pipes``: all SIMD pipes (every vector instruction takes one);
    - ``load_ports``: loads per cycle (128-bit on ARM, 256-bit on x86);
    - ``issue_width``: instructions decoded/dispatched per cycle;
    - ``broadcast_uses_vector``: whether a broadcast load (``ld1r``) also takes a vector pipe;
    - ``sve_bits``: the SVE vector length (0: no SVE), which the trip counts of LLVM's
      scalable-vector loops depend on (:mod:`intvit.analysis.row_static`);
    - ``llvm_model_note``: how LLVM's scheduling model for ``-mcpu`` differs from the core,
      where it is known to (llvm-mca reads that model, not the core).
    """

    mcpu: str
    mul_pipes: dict[str, int]
    vector_pipes: int
    load_ports: int
    issue_width: int
    broadcast_uses_vector: bool
    source: str
    llvm_model_note: str = ""
    sve_bits: int = 0


def _intel_cores(
    cpus: tuple[str, ...], load_ports: int, issue_width: int, source: str
) -> tuple[CoreModel, ...]:
    """Intel cores whose int8 multiplies (``vpmaddwd``, ``vpmaddubsw`` and the VNNI
    ``vpdpbusd``/``vpdpwssd``, ymm) issue on ports 0 and 1, among 3 vector ALU ports."""
    mul = {"vpmaddwd": 2, "vpmaddubsw": 2, "vpdpbusd": 2, "vpdpwssd": 2}
    return tuple(
        CoreModel(
            cpu,
            mul,
            vector_pipes=3,
            load_ports=load_ports,
            issue_width=issue_width,
            broadcast_uses_vector=False,
            source=source,
        )
        for cpu in cpus
    )


CORES: dict[str, CoreModel] = {
    c.mcpu: c
    for c in (
        CoreModel(
            "neoverse-n1",
            {"sdot": 2, "smull": 2},
            vector_pipes=2,
            load_ports=2,
            issue_width=4,
            broadcast_uses_vector=True,
            source="Arm Neoverse N1 Software Optimization Guide (SDOT, SMULL: V0/V1; "
            "LD1R: L + V; decode 4/cycle)",
        ),
        CoreModel(
            "neoverse-v1",
            {"sdot": 4, "smmla": 4, "smull": 4},
            vector_pipes=4,
            load_ports=3,
            issue_width=8,
            broadcast_uses_vector=True,
            source="Arm Neoverse V1 Software Optimization Guide (SDOT, SMMLA: V0-V3; "
            "3 load pipes; 8 MOPs dispatched/cycle); SVE vector length 256 bits (Neoverse V1 "
            "Technical Reference Manual)",
            sve_bits=256,
        ),
        CoreModel(
            "cortex-a76",
            {"sdot": 2, "smull": 2},
            vector_pipes=2,
            load_ports=2,
            issue_width=4,
            broadcast_uses_vector=True,
            source="Arm Cortex-A76 Software Optimization Guide (SDOT: V0/V1; LD1R: L + V; "
            "decode 4/cycle)",
            llvm_model_note="LLVM 19 has no Cortex-A76 model of its own: -mcpu=cortex-a76 "
            "schedules with an older Cortex-A57-class model",
        ),
        CoreModel(
            "cortex-a72",
            {"smull": 1},
            vector_pipes=2,
            load_ports=1,
            issue_width=3,
            broadcast_uses_vector=True,
            source="Arm Cortex-A72 Software Optimization Guide (ASIMD integer multiply: "
            "F0 only; F0/F1 for other ASIMD; one load pipe; decode 3/cycle)",
        ),
        CoreModel(
            "apple-m1",
            {"sdot": 4, "smull": 4},
            vector_pipes=4,
            load_ports=3,
            issue_width=8,
            broadcast_uses_vector=False,
            source="Dougall Johnson's Firestorm measurements (4 SIMD pipes, SDOT 4/cycle, "
            "3 load ports, 8-wide decode)",
            llvm_model_note="LLVM 19's -mcpu=apple-m1 schedules with its Cyclone model: 3 "
            "SIMD units, so llvm-mca tops out at 3 of M1's 4 sdot per cycle",
        ),
        CoreModel(
            "apple-a13",
            {"sdot": 3, "smull": 3},
            vector_pipes=3,
            load_ports=2,
            issue_width=7,
            broadcast_uses_vector=False,
            source="AnandTech's A13 Lightning analysis (3 SIMD pipes, 7-wide decode); "
            "unverified by a measurement of ours",
            llvm_model_note="LLVM 19's -mcpu=apple-a13 schedules with its Cyclone model",
        ),
        CoreModel(
            "znver3",
            {"vpmaddwd": 2, "vpmaddubsw": 2},
            vector_pipes=4,
            load_ports=2,
            issue_width=6,
            broadcast_uses_vector=False,
            source="AMD Zen 3 Software Optimization Guide and uops.info (VPMADDWD, "
            "VPMADDUBSW: FP0/FP3; 2 256-bit loads/cycle; dispatch 6)",
        ),
        *_intel_cores(
            ("sapphirerapids", "emeraldrapids", "graniterapids"),
            load_ports=3,
            issue_width=6,
            source="uops.info for Golden Cove / Raptor Cove (VPMADDWD, VPMADDUBSW, "
            "VPDPBUSD, VPDPWSSD ymm: p0/p1; vector ALUs p0/p1/p5; 3 loads/cycle; "
            "allocation 6/cycle)",
        ),
        *_intel_cores(
            ("icelake-client", "icelake-server", "rocketlake", "tigerlake"),
            load_ports=2,
            issue_width=5,
            source="uops.info for Ice Lake / Rocket Lake (Sunny and Cypress Cove: "
            "VPMADDWD, VPMADDUBSW, VPDPBUSD, VPDPWSSD ymm: p0/p1; vector ALUs p0/p1/p5; "
            "2 loads/cycle; allocation 5/cycle)",
        ),
    )
}


def core_model(mcpu: str) -> CoreModel | None:
    """The table entry for ``mcpu`` (None: no published figures recorded for it)."""
    return CORES.get(mcpu)
