"""Named target presets as TVM target dicts, with the cross compiler each needs.

TVM 0.27 takes targets as dicts (``{"kind": "llvm", "mcpu": ...}``); strings are rejected.
The host preset is read from the CPU LLVM sees, never assumed: a library built for a CPU
feature the host lacks dies with SIGILL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm

from intvit.schedules.hostcpu import host_cpu
from intvit.topi.contract import check_choice


@dataclass(frozen=True)
class TargetPreset:
    """A deployment target: the TVM target dict and how to link a library for it."""

    name: str
    target: dict
    description: str
    cross_compiler: str | None = None  # None: the host compiler (TVM's default)
    linkable_here: bool = True
    features: tuple[str, ...] = field(default_factory=tuple)

    def tvm_target(self) -> tvm.target.Target:
        return tvm.target.Target(self.target)

    @property
    def cores(self) -> int:
        """The cores its schedules parallelize over (the target's ``num-cores``)."""
        return int(self.target.get("num-cores", 1))

    @property
    def is_aarch64(self) -> bool:
        from intvit.schedules.triple import is_arm64

        return is_arm64(self.target)


def host_preset(num_cores: int | None = None) -> TargetPreset:
    from intvit.deploy.threads import usable_cpus

    cpu, feats = host_cpu()
    cores = num_cores or len(usable_cpus())
    target = {"kind": "llvm", "mcpu": cpu, "num-cores": int(cores)}
    return TargetPreset("host", target, f"this machine ({cpu}: {', '.join(feats)})", features=feats)


_AARCH64_GCC = "aarch64-linux-gnu-g++"


def _arm(name, triple, mcpu, mattr, desc, cc=_AARCH64_GCC, linkable=True):
    target = {"kind": "llvm", "mtriple": triple, "mattr": list(mattr), "num-cores": 4}
    if mcpu:
        target["mcpu"] = mcpu
    return TargetPreset(name, target, desc, cc, linkable, tuple(a.lstrip("+") for a in mattr))


PRESETS: dict[str, TargetPreset] = {
    p.name: p
    for p in (
        _arm("aarch64-linux", "aarch64-linux-gnu", None, ["+neon"], "generic ARMv8-A Linux, NEON"),
        _arm(
            "aarch64-dotprod",
            "aarch64-linux-gnu",
            None,
            ["+neon", "+dotprod"],
            "ARMv8.2-A Linux with sdot/udot",
        ),
        _arm("rpi4", "aarch64-linux-gnu", "cortex-a72", ["+neon"], "Raspberry Pi 4 (Cortex-A72)"),
        _arm(
            "rpi5",
            "aarch64-linux-gnu",
            "cortex-a76",
            ["+neon", "+dotprod"],
            "Raspberry Pi 5 (Cortex-A76)",
        ),
        _arm(
            "graviton",
            "aarch64-linux-gnu",
            "neoverse-n1",
            ["+neon", "+dotprod"],
            "AWS Graviton2 (Neoverse N1)",
        ),
        _arm(
            "graviton3",
            "aarch64-linux-gnu",
            "neoverse-v1",
            ["+neon", "+dotprod", "+i8mm"],
            "AWS Graviton3 (Neoverse V1)",
        ),
        _arm(
            "apple-m1",
            "arm64-apple-macos",
            "apple-m1",
            ["+neon", "+dotprod"],
            "Apple M1 (macOS); link on a Mac",
            cc=None,
            linkable=False,
        ),
        _arm(
            "apple-a13",
            "arm64-apple-ios",
            "apple-a13",
            ["+neon", "+dotprod"],
            "Apple A13 (iOS); link with Xcode",
            cc=None,
            linkable=False,
        ),
    )
}


def list_presets() -> list[str]:
    return ["host", *PRESETS]


def get_preset(name: str, num_cores: int | None = None) -> TargetPreset:
    """A preset by name; ``host`` is detected from this machine's CPU."""
    check_choice("target preset", name, list_presets())
    if name == "host":
        return host_preset(num_cores)
    preset = PRESETS[name]
    if num_cores:
        target = dict(preset.target, **{"num-cores": int(num_cores)})
        return TargetPreset(
            preset.name,
            target,
            preset.description,
            preset.cross_compiler,
            preset.linkable_here,
            preset.features,
        )
    return preset
