"""The cores whole models are counted and costed on: which preset builds for each, which CPU
QEMU emulates for it (the peers choose their kernels from its hwcaps), which llvm-mca model
costs it, and at which clock a modelled cycle count becomes milliseconds.

LLVM 19's ``cortex-a72``/``a76``/``a78``/``x1`` models are its Cortex-A57 model (identical
llvm-mca output), and ``apple-m1`` is its 2013 Cyclone model; so Neoverse N1 and V1 are the
named cores, the Raspberry Pi 5's A76 is costed with the N1 model (the A76's server sibling),
and the Pi 4's A72 with the A57 model, labelled as such. No Apple figure is modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from intvit.analysis.block_cost import McaCore
from intvit.topi.contract import check_choice


@dataclass(frozen=True, kw_only=True)
class EmulatedCore:
    """One modelled core.

    - ``preset``: the intvit target preset whose libraries run on it;
    - ``qemu_cpu``: ``QEMU_CPU`` for ``qemu-aarch64`` (its hwcaps pick the peers' kernels);
    - ``mca``: the llvm-mca model that costs it;
    - ``clock_ghz``: the usual clock of the product, for modelled milliseconds;
    - ``cpuinfo``: the ``/proc/cpuinfo`` the guest sees (the x86 host's is unreadable to the
      peers' cpuinfo code, which segfaults on it): implementer, part and features;
    - ``note``: what stands in for what.
    """

    name: str
    preset: str
    qemu_cpu: str
    mca: McaCore
    clock_ghz: float
    cpu_part: str
    features: str
    note: str

    def cpuinfo(self) -> str:
        return (
            "processor\t: 0\nBogoMIPS\t: 50.00\n"
            f"Features\t: {self.features}\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
            f"CPU part\t: {self.cpu_part}\nCPU revision\t: 0\n\n"
        )


_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82 = f"{_V80} atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp ssbs"

CORES: dict[str, EmulatedCore] = {
    c.name: c
    for c in (
        EmulatedCore(
            name="graviton",
            preset="graviton",
            qemu_cpu="neoverse-n1",
            mca=McaCore("aarch64", "neoverse-n1"),
            clock_ghz=2.5,
            cpu_part="0xd0c",
            features=_V82,
            note="AWS Graviton2: Neoverse N1, LLVM's N1 model",
        ),
        EmulatedCore(
            name="graviton3",
            preset="graviton3",
            qemu_cpu="max,sme=off,sve256=on",
            mca=McaCore("aarch64", "neoverse-v1"),
            clock_ghz=2.6,
            cpu_part="0xd40",
            features=f"{_V82} sve i8mm bf16 svei8mm",
            note="AWS Graviton3: Neoverse V1, LLVM's V1 model; QEMU 7.2 has no V1 CPU, so "
            "the emulated CPU is 'max' with SME off and 256-bit SVE (i8mm, dotprod, bf16; it "
            "keeps SVE2, which V1 lacks)",
        ),
        EmulatedCore(
            name="rpi4",
            preset="rpi4",
            qemu_cpu="cortex-a72",
            mca=McaCore("aarch64", "cortex-a72"),
            clock_ghz=1.8,
            cpu_part="0xd08",
            features=_V80,
            note="Raspberry Pi 4: Cortex-A72 (no dotprod), costed with LLVM's Cortex-A57 "
            "model (LLVM 19's cortex-a72 is the A57's): an approximation",
        ),
        EmulatedCore(
            name="rpi5",
            preset="rpi5",
            qemu_cpu="cortex-a76",
            mca=McaCore("aarch64", "neoverse-n1"),
            clock_ghz=2.4,
            cpu_part="0xd0b",
            features=_V82,
            note="Raspberry Pi 5: Cortex-A76, costed with LLVM's Neoverse N1 model standing "
            "in for the A76 (LLVM 19's cortex-a76 is the A57's)",
        ),
    )
}


def get_core(name: str) -> EmulatedCore:
    check_choice("modelled core", name, list(CORES))
    return CORES[name]
