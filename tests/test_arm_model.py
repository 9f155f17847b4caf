"""Whole-model counting and costing (intvit.analysis): the QEMU plugin counts exactly, the
block parser and the differencing are right, the disassembly and llvm-mca costing hold their
contracts, and (device tier) intvit's ARM libraries stay within their instruction budgets."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from intvit.analysis.block_cost import (
    REP_BYTES_PER_CYCLE,
    McaCore,
    block_cycles,
    disassemble,
)
from intvit.analysis.instruction_mix import InstructionMix, classify
from intvit.analysis.model_profile import kernel_category
from intvit.analysis.qemu_count import (
    BlockKey,
    build_plugin,
    parse_counts,
    parse_maps,
    per_inference,
    run_counted,
)

BUDGETS = Path(__file__).with_name("arm_instruction_budget.json")
#: A change may move a library's count by this much before the budget test fails.
BUDGET_SLACK = 0.002

needs_llvm = pytest.mark.skipif(
    shutil.which("llvm-mca-19") is None or shutil.which("llvm-mc-19") is None,
    reason="llvm-19 missing (make system-deps)",
)
needs_qemu_user = pytest.mark.skipif(
    shutil.which("qemu-aarch64") is None
    or shutil.which("aarch64-linux-gnu-gcc") is None
    or shutil.which("cc") is None,
    reason="qemu-user or the aarch64 cross compiler missing (make system-deps)",
)

MAPS = """\
5500000000-5500010000 r-xp 00000000 fe:00 1   /lib/libm.so
5500010000-5500011000 r--p 00010000 fe:00 1   /lib/libm.so
5500020000-5500030000 r--p 00000000 fe:00 2   /opt/model.so
5500030000-5500040000 r-xp 00010000 fe:00 2   /opt/model.so
5500050000-5500060000 rw-p 00000000 00:00 0
"""


def test_maps_give_each_file_its_load_base():
    maps = {m.path: m for m in parse_maps(MAPS)}
    assert maps["/lib/libm.so"].base == 0x5500000000
    # a file whose code is not its first mapping: the base is its offset-0 mapping's start
    assert maps["/opt/model.so"].base == 0x5500020000
    assert maps["[anon]"].start == 0x5500050000


def test_counts_are_keyed_by_file_and_offset_and_retranslations_sum():
    maps = parse_maps(MAPS)
    text = (
        "5500030010 7 2 1f2003d5:c0035fd6\n"
        "5500030010 5 2 1f2003d5:c0035fd6\n"  # the same block translated again
        "5500000100 3 1 1f2003d5\n"
        "7000000000 1 1 1f2003d5\n"
    )
    counts = parse_counts(text, maps)
    key = BlockKey("/opt/model.so", 0x10010)
    assert counts.executions[key] == 12
    assert counts.blocks[key].n_insns == 2
    assert counts.executions[BlockKey("/lib/libm.so", 0x100)] == 3
    assert counts.executions[BlockKey("[anon]", 0x7000000000)] == 1
    assert counts.total_instructions() == 12 * 2 + 3 + 1


def test_per_inference_is_the_difference_over_the_extra_runs():
    maps = parse_maps(MAPS)
    one = parse_counts("5500000100 10 1 1f2003d5\n5500000200 4 1 1f2003d5\n", maps)
    three = parse_counts("5500000100 30 1 1f2003d5\n5500000200 4 1 1f2003d5\n", maps)
    per = per_inference(one, three, 2)
    assert per.executions == {BlockKey("/lib/libm.so", 0x100): 10}  # start-up work drops out


@pytest.mark.parametrize(
    ("asm", "arch", "cls"),
    [
        ("sdot v0.4s, v1.16b, v2.4b[1]", "aarch64", "multiply"),
        ("smmla v0.4s, v1.16b, v2.16b", "aarch64", "multiply"),
        ("smull v3.8h, v1.8b, v2.8b", "aarch64", "multiply"),
        ("fmla v0.4s, v1.4s, v2.4s", "aarch64", "multiply"),
        ("madd x0, x1, x2, x3", "aarch64", "multiply"),
        ("ldr q0, [x1, #16]", "aarch64", "load"),
        ("ld1r { v0.4s }, [x2]", "aarch64", "load"),
        ("stp x29, x30, [sp, #-16]!", "aarch64", "store"),
        ("sadalp v0.4s, v1.8h", "aarch64", "vector"),
        ("add x0, x1, #4", "aarch64", "scalar"),
        ("b.ne #-16", "aarch64", "scalar"),
        ("vpdpbusd %ymm1, %ymm2, %ymm3", "x86_64", "multiply"),
        ("vpmaddwd (%rax), %ymm2, %ymm3", "x86_64", "multiply"),
        ("vmovdqu (%rax), %ymm0", "x86_64", "load"),
        ("movq %rax, 8(%rsp)", "x86_64", "store"),
        ("vpaddd %ymm1, %ymm2, %ymm3", "x86_64", "vector"),
        ("addq $1, %rax", "x86_64", "scalar"),
    ],
)
def test_instruction_classes(asm, arch, cls):
    assert classify(asm, arch) == cls


def test_instruction_mix_adds_and_shares():
    mix = InstructionMix(multiply=2, load=1) + InstructionMix(store=1)
    assert mix.total == 4 and mix.share("multiply") == 0.5


def test_attention_gemms_are_told_from_linears_by_their_operands():
    linear = [[[1, 197, 192], "int8"], [[144, 48, 4, 4], "int8"], [[576], "int32"]]
    scores = [[[3, 197, 64], "int8"], [[3, 197, 64], "int8"], [[3, 197, 197], "int32"]]
    assert kernel_category("b0_qkv_packed", "packed_gemm", linear) == "gemm"
    assert kernel_category("batch_matmul_packed", "packed_gemm", scores) == "attention"
    assert kernel_category("softmax3", "softmax", scores) == "softmax"
    assert kernel_category("fused_matmul_add", None, []) == "gemm"  # TVM's FP32, by op name


@needs_llvm
def test_disassembly_keeps_each_instruction_apart():
    sdot = bytes.fromhex("20e0824f")  # sdot v0.4s, v1.16b, v2.4b[0]
    invalid = bytes.fromhex("ffffffff")
    asm = disassemble([sdot, invalid, sdot], "aarch64")
    assert set(asm) == {sdot} and asm[sdot].startswith("sdot")
    lock_xadd = bytes.fromhex("f0480fc101")  # lock xaddq %rax, (%rcx): a prefix line
    jne = bytes.fromhex("7510")  # a branch: llvm-mc shows its target as a fixup
    x86 = disassemble([lock_xadd, jne, b"\x06"], "x86_64")
    assert x86[lock_xadd].startswith("lock xadd") and x86[jne].startswith("jne")
    assert b"\x06" not in x86


@needs_llvm
def test_costing_sees_dependencies_and_rep_strings():
    core = McaCore("aarch64", "neoverse-n1")
    chain = ["madd x0, x0, x1, x2"] * 4
    independent = ["madd x3, x1, x1, x2", "madd x4, x1, x1, x2", "madd x5, x1, x1, x2"]
    encode = {text: i.to_bytes(4, "little") for i, text in enumerate(chain + independent)}
    asm = {enc: text for text, enc in encode.items()}
    dep, ind = block_cycles(
        [tuple(encode[t] for t in chain), tuple(encode[t] for t in independent)], core, asm
    )
    assert dep.cycles > ind.cycles  # the dependent chain is latency-bound
    assert dep.bound <= dep.cycles
    rep = bytes.fromhex("f3a4")  # rep movsb: one QEMU execution per byte
    x86 = block_cycles([(rep,)], McaCore("x86_64", "znver2"), disassemble([rep], "x86_64"))
    assert x86[0].cycles == pytest.approx(1 / REP_BYTES_PER_CYCLE)


LOOP_C = r"""
#include <stdlib.h>
int main(int argc, char **argv) {
    volatile long s = 0;
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++) s += i;
    return (int)(s & 1) * 0;
}
"""


@needs_qemu_user
def test_plugin_counts_every_execution_exactly(tmp_path):
    src = tmp_path / "loop.c"
    src.write_text(LOOP_C)
    exe = tmp_path / "loop"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", "-static", "-o", exe, src], check=True)
    plugin = build_plugin(tmp_path / "plugin")
    runs = {}
    for n in (1000, 5000):
        maps = tmp_path / f"maps{n}.txt"
        # a static binary cannot print its own maps: qemu's view of the binary is one mapping
        maps.write_text(f"0-ffffffffffff r-xp 00000000 00:00 0 {exe}\n")
        runs[n] = run_counted("aarch64", [str(exe), str(n)], {}, tmp_path, plugin, maps)
    per = per_inference(runs[1000], runs[5000], 4000)
    # the loop body runs once per iteration, and nothing else differs between the runs
    assert sorted(per.executions.values()) == [1]
    body = next(iter(per.blocks.values()))
    assert body.n_insns >= 3
    again = run_counted(
        "aarch64", [str(exe), "1000"], {}, tmp_path, plugin, tmp_path / "maps1000.txt"
    )
    assert again.executions == runs[1000].executions  # counts repeat exactly


@pytest.mark.device
@pytest.mark.parametrize("core", ["graviton", "rpi4"])
def test_arm_library_within_its_instruction_budget(core, tmp_path):
    """intvit's digits ViT (random weights, seed 0) on an emulated ARM core: bit-exact against
    the reference forward, and its library executes no more instructions per inference than
    its budget. A deliberate change updates ``arm_instruction_budget.json`` in its commit."""
    from intvit.analysis.emulated_cores import get_core
    from intvit.analysis.guest import aarch64_guest
    from intvit.analysis.model_profile import count_build
    from intvit.bench.modelled import prepare_model, tvm_builds
    from intvit.deploy.targets import get_preset

    spec = get_core(core)
    case = prepare_model("digits_vit", tmp_path)
    intvit_build = tvm_builds(case, get_preset(spec.preset), core, fp32=False)[0]
    counts = count_build(intvit_build, aarch64_guest(spec, peers=False), tmp_path)
    library = str(intvit_build.library)
    executed = counts.total_instructions(lambda key: key.path == library)
    budget = json.loads(BUDGETS.read_text())["digits_vit"][core]
    assert executed > 0
    assert executed <= budget * (1 + BUDGET_SLACK), (
        f"{core}: {executed} instructions per inference, budget {budget}"
    )


def test_modelled_profile_refuses_an_x86_library(tmp_path, capsys):
    from intvit.cli import main
    from intvit.deploy.manifest import LibraryManifest, write_manifest

    lib = tmp_path / "m.so"
    lib.write_bytes(b"\x7fELF")
    manifest = LibraryManifest(
        "host", {"kind": "llvm"}, "x86_64", (1, 1, 32, 32), "int8", "int", "m"
    )
    write_manifest(lib, manifest)
    assert main(["bench", str(lib), "--modelled"]) == 2
    err = capsys.readouterr().err
    assert "is built for x86_64" in err and "graviton" in err and "Traceback" not in err
