"""The instruction mix of executed code: multiplies and dot products, loads, stores, other
vector and other scalar instructions, from LLVM's assembly text of each instruction.

The classes partition the instructions: a multiply that reads memory (x86) counts as a
multiply, a load or store counts once as such whatever registers it uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields

MULTIPLY = "multiply"
LOAD = "load"
STORE = "store"
VECTOR = "vector"
SCALAR = "scalar"
CLASSES = (MULTIPLY, LOAD, STORE, VECTOR, SCALAR)

_ARM_MULTIPLY = re.compile(
    r"^(s|u|us|su|bf)?(dot|mmla)$|^(s|u)?(mull2?|mlal2?|mlsl2?|mulh|maddl|msubl)$"
    r"|^(mul|mla|mls|madd|msub|mneg)$|^sq(r)?dmulh$|^f(n)?(mul|mla|mls|madd|msub|mulx)$"
)
_ARM_VECTOR = re.compile(r"\b[vzq]\d+\b|\bp\d+/|\b[vz]\d+\.")
_X86_MULTIPLY = re.compile(r"mul|madd|vpdp|fmadd|fmsub|fnmadd|fnmsub")
_X86_VECTOR = re.compile(r"%[xyz]mm\d+|%k\d")


def _arm_class(mnemonic: str, operands: str) -> str:
    if _ARM_MULTIPLY.match(mnemonic):
        return MULTIPLY
    if mnemonic.startswith("ld"):
        return LOAD
    if mnemonic.startswith("st"):
        return STORE
    return VECTOR if _ARM_VECTOR.search(operands) else SCALAR


def _x86_class(mnemonic: str, operands: str) -> str:
    if _X86_MULTIPLY.search(mnemonic):
        return MULTIPLY
    parts = [p.strip() for p in operands.split(",")] if operands else []
    if parts and "(" in parts[-1] and mnemonic.startswith(("mov", "vmov", "push", "stos")):
        return STORE
    if any("(" in p for p in parts) and not mnemonic.startswith(("lea", "nop")):
        return LOAD
    return VECTOR if _X86_VECTOR.search(operands) else SCALAR


CLASSIFIERS: dict[str, Callable[[str, str], str]] = {"aarch64": _arm_class, "x86_64": _x86_class}


def classify(asm: str, arch: str) -> str:
    """The class of one instruction's assembly text (``mnemonic operands``)."""
    mnemonic, _, operands = asm.partition(" ")
    mnemonic = mnemonic.split(".")[0] if arch == "aarch64" else mnemonic
    return CLASSIFIERS[arch](mnemonic.lower(), operands)


@dataclass(frozen=True)
class InstructionMix:
    """Dynamic instructions per inference by class."""

    multiply: int = 0
    load: int = 0
    store: int = 0
    vector: int = 0
    scalar: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def share(self, name: str) -> float:
        return getattr(self, name) / self.total if self.total else 0.0

    def __add__(self, other: InstructionMix) -> InstructionMix:
        return InstructionMix(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @classmethod
    def of(cls, counts: dict[str, int]) -> InstructionMix:
        return cls(**{c: int(counts.get(c, 0)) for c in CLASSES})
