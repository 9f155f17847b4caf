"""Benchmark: the integer-only model with its default integer GELU against the GELU-less one
(seed 002: ReLU, run in the fc1 GEMM's epilogue), on this machine as an RPC device, in one run.

    .venv/bin/python benchmarks/gelu_less.py [--models deit_tiny_patch16_224,...]

Both libraries are compiled with the same schedules, exported, checked bit-exact against the
reference forward, then measured in one session of a local tracker and server, alternately
(GELU, GELU-less, GELU, GELU-less) so that drift hits both alike, and profiled per operator.
Random weights (speed does not depend on them). Writes
benchmarks/results/gelu_less-<cpu>-<threads>t.json
(``case``, ``ours`` = GELU-less, ``baseline`` = integer GELU, ``ours_ms``, ``baseline_ms``,
``speedup``, and the per-category milliseconds of both).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import tvm

from intvit.bench.records import BenchRecord, RecordLog
from intvit.deploy import rpc
from intvit.deploy.bench import BenchConfig, DeviceSession, Latency, category_totals
from intvit.deploy.compile import compile_int_model, export
from intvit.deploy.manifest import read_manifest
from intvit.deploy.runner import load, run
from intvit.models.gelu_less import swap_all
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import reference_forward

RESULTS = Path(__file__).resolve().parent / "results" / "gelu_less.json"
CFG = BenchConfig(warmup=2, number=3, repeat=5, step_timeout_s=600)
DEFAULT_MODELS = "deit_tiny_patch16_224,swin_tiny_patch4_window7_224,digits_vit"


def _libraries(name: str, tmp: Path) -> dict[str, Path]:
    """The GELU and the GELU-less integer library of ``name``, each checked bit-exact."""
    torch.manual_seed(0)
    model = create_float_model(name)
    img, chans = int(model.patch_embed.img_size[0]), model.patch_embed.proj.in_channels
    calib = torch.randn(8, chans, img, img).numpy()
    q = np.random.default_rng(0).integers(-128, 128, (1, chans, img, img), dtype=np.int8)
    libs = {}
    for label, float_model, config in (
        ("int GELU (edge)", model, QuantConfig()),
        ("int GELU-less", swap_all(model), QuantConfig(gelu="relu")),
    ):
        int_model = calibrate(float_model, calib, config)
        stem = "gelu_less" if config.gelu == "relu" else "gelu"
        path = export(
            compile_int_model(int_model, "host", profile=True), "host", tmp / f"{name}_{stem}.so"
        )
        if not np.array_equal(run(load(str(path)), q), reference_forward(int_model, q)):
            raise AssertionError(f"{name} {label}: the library differs from the reference")
        libs[label] = path
    return libs


def bench_model(name: str, session: DeviceSession, keep) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{name}: compiling both integer-only models ...", flush=True)
        libs = _libraries(name, Path(tmp))
        samples: dict[str, list[float]] = {label: [] for label in libs}
        for _ in range(2):  # alternate, so that machine drift hits both
            for label, path in libs.items():
                samples[label] += session.measure(path, read_manifest(path), label).samples_ms
        totals = {
            label: category_totals(session.profile(path, read_manifest(path)))
            for label, path in libs.items()
        }
    (base, base_label), (ours, ours_label) = (
        (Latency(label, "rpc:local", samples[label]), label) for label in libs
    )
    cats = sorted(
        {c for t in totals.values() for c in t}, key=lambda c: -totals[base_label].get(c, 0)
    )
    print(f"  per-operator (ms): {'':<10}{base_label:>24}{ours_label:>26}")
    for c in cats:
        before, after = totals[base_label].get(c, 0.0), totals[ours_label].get(c, 0.0)
        print(f"  {c:<28}{before:>24.3f}{after:>26.3f}")
    keep(
        BenchRecord(
            name,
            ours_label,
            base_label,
            ours.median_ms,
            base.median_ms,
            extra={
                "threads": int(tvm.runtime.num_threads()),
                "batch": 1,
                "per_category_ms": {
                    "baseline": totals[base_label],
                    "ours": totals[ours_label],
                },
                "baseline_p10_p90_ms": base.spread_ms,
                "ours_p10_p90_ms": ours.spread_ms,
            },
        )
    )


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    log = RecordLog.on_this_machine(
        args.out,
        lambda record: (
            f"  GELU-less {record.ours_ms:.3f} ms vs integer GELU {record.baseline_ms:.3f} ms: "
            f"{record.speedup:.3f}x"
        ),
    )

    with tempfile.TemporaryDirectory() as logs:
        with rpc.start_tracker(log_dir=Path(logs)) as tracker:
            with rpc.start_host_server(tracker.port, "local", log_dir=Path(logs)):
                client = rpc.connect_tracker("127.0.0.1", tracker.port)
                rpc.wait_for_device(client, "local", 60)
                with DeviceSession(client, "local", CFG) as session:
                    for name in args.models.split(","):
                        bench_model(name, session, log.add)
    print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
