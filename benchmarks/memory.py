"""Benchmark: the memory of the compiled integer-only libraries, for one inference at batch 1.

    .venv/bin/python benchmarks/memory.py

For the digits ViT/DeiT/Swin, the three heterogeneous digits archs, DeiT-tiny and DeiT-small
(random weights: memory does not depend on their values): the Relax VM's planned activation
storage (after TVM's static memory planning), the largest kernel's own scratch buffers (an
upper bound), the constant bytes and the exported library's file size; beside them, the
independent peak of live intermediate tensors, and the same figures for TVM's FP32 build of
the float model. PyTorch's CPU allocator keeps no peak statistic, so PyTorch's own peak is
not recorded. Writes benchmarks/results/memory.json (records: case, activation_bytes,
weight_bytes, library_bytes, kernel_scratch_bytes, peak_live_bytes, fp32_activation_bytes,
fp32_weight_bytes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tvm import relax

from intvit.bench.records import machine_info
from intvit.deploy.compile import compile_int_model, export, fused_float_module
from intvit.deploy.memory import kib, memory_report, peak_live_bytes
from intvit.deploy.targets import get_preset
from intvit.models.hetero_vit import HeteroViT, resolve_arch
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
CASES = (
    "digits_vit",
    "digits_deit",
    "digits_swin",
    "digits_lowrank",
    "digits_odd",
    "digits_hetero",
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
)


def _float_model(name: str):
    torch.manual_seed(0)
    if name.startswith("digits_") and name not in ("digits_vit", "digits_deit", "digits_swin"):
        return HeteroViT(resolve_arch(name)).eval()
    return create_float_model(name)


def measure(name: str, folder: Path) -> dict:
    preset = get_preset("host")
    model = _float_model(name)
    img, chans = int(model.patch_embed.img_size[0]), int(model.patch_embed.proj.in_channels)
    calib = np.random.default_rng(0).standard_normal((4, chans, img, img)).astype(np.float32)
    int_model = calibrate(model, calib)
    compiled = compile_int_model(int_model, preset)
    lib = export(compiled, preset, folder / f"{name}.so")
    memory = compiled.manifest.memory
    from intvit.deploy.compile import lowered_module

    unplanned, _ = lowered_module(int_model, preset)
    fp32 = fused_float_module(model, (1, chans, img, img), preset)
    with preset.tvm_target():
        fp32_lowered = relax.get_pipeline("default")(fp32)
    fp32_memory = memory_report(fp32, fp32_lowered)
    return {
        "case": name,
        "activation_bytes": memory.activation_bytes,
        "weight_bytes": memory.weight_bytes,
        "library_bytes": lib.stat().st_size,
        "kernel_scratch_bytes": memory.kernel_scratch_bytes,
        "peak_live_bytes": peak_live_bytes(unplanned),
        "fp32_activation_bytes": fp32_memory.activation_bytes,
        "fp32_weight_bytes": fp32_memory.weight_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    records = []
    head = f"{'case':<24}{'activations':>13}{'live peak':>12}{'scratch<=':>12}{'weights':>12}"
    head += f"{'library':>12}{'FP32 act.':>12}{'FP32 w.':>12}"
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            r = measure(name, Path(tmp))
            records.append({**r, "machine": machine["cpu"], "tvm": machine["tvm"]})
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(records, indent=2) + "\n")  # kept as measured
            print(
                f"{name:<24}{kib(r['activation_bytes']):>13}{kib(r['peak_live_bytes']):>12}"
                f"{kib(r['kernel_scratch_bytes']):>12}{kib(r['weight_bytes']):>12}"
                f"{kib(r['library_bytes']):>12}{kib(r['fp32_activation_bytes']):>12}"
                f"{kib(r['fp32_weight_bytes']):>12}",
                flush=True,
            )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
