"""The main job on the embedded default, end to end, with no device, data or download:
the built-in digits ViT (trained on first use, cached) is quantized, checked against FP32,
compiled for this CPU, exported as a ``.so``, checked bit-exact against the reference forward,
and benchmarked integer-only vs FP32 through a local RPC tracker and server."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from intvit.api.eval import EvalResult
from intvit.deploy.bench import BenchConfig
from intvit.paths import write_text_atomic


@dataclass
class PipelineConfig:
    model: str = "digits_vit"
    out: Path = Path("out")
    check_images: int = 100  # test images run through the exported library
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(repeat=10, number=20))
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class PipelineSummary:
    """What the main job produced: the artifact and library, whether the library equals the
    reference forward on ``bit_exact_images`` test images (0 where it does not), top-1
    accuracy, the integer-only library's median latency, its speed-up over each baseline
    (baseline ms / ours) and the strongest of them, and the report files by kind."""

    model: str
    artifact: str
    library: str
    bit_exact: bool
    bit_exact_images: int
    accuracy: EvalResult
    int_ms: float
    speedup_vs: dict[str, float]
    headline_baseline: str | None
    reports: dict[str, str]

    def as_dict(self) -> dict:
        """The JSON written as ``pipeline.json``."""
        return {**asdict(self), "accuracy": self.accuracy.as_dict()}


def _say(step: int, total: int, text: str) -> None:
    print(f"[{step}/{total}] {text}", flush=True)


def run_pipeline(cfg: PipelineConfig) -> PipelineSummary:
    """Run every stage; returns the summary that is printed and written as JSON."""
    import json

    from intvit.api.bench import BenchRequest, run_bench
    from intvit.api.eval import evaluate
    from intvit.api.quantize import ModelSpec, quantize
    from intvit.deploy import rpc
    from intvit.deploy.compile import compile_int_model, export
    from intvit.deploy.runner import load, run
    from intvit.models.train import ensure_trained
    from intvit.quant.artifact import save_int_model
    from intvit.quant.config import QuantConfig
    from intvit.quant.reference import quantize_input, reference_forward

    steps = 5
    spec = ModelSpec(cfg.model)
    _say(1, steps, f"float model {cfg.model} (trained on first use, cached) and quantization")
    float_model, int_model = quantize(spec, QuantConfig(), progress=cfg.progress)
    artifact = save_int_model(int_model, cfg.out / f"{cfg.model}.int.safetensors")

    _say(2, steps, "accuracy on the test split: FP32 vs integer-only")
    test = spec.split("test", int_model.arch.img_size)
    accuracy = evaluate(float_model, int_model, test, cfg.model)

    _say(3, steps, "compile for this CPU, export the library, check it against the reference")
    library = export(
        compile_int_model(int_model, "host", profile=True), "host", cfg.out / f"{cfg.model}.so"
    )
    vm = load(str(library))
    q = quantize_input(int_model, test.images[: cfg.check_images])
    got = np.concatenate([run(vm, q[i : i + 1]) for i in range(len(q))])
    bit_exact = bool(np.array_equal(got, reference_forward(int_model, q)))

    _say(4, steps, "local RPC tracker and server; integer-only vs FP32 on the device")
    logs = cfg.out / "rpc-logs"
    with rpc.start_tracker(log_dir=logs) as tracker:
        with rpc.start_host_server(tracker.port, "local", log_dir=logs):
            rpc.wait_for_device(rpc.connect_tracker("127.0.0.1", tracker.port), "local", 60)
            request = BenchRequest(
                library,
                f"127.0.0.1:{tracker.port}",
                "local",
                compare=True,
                per_op=True,
                float_model=cfg.model,
                checkpoint=str(ensure_trained(cfg.model, progress=False)),
                out=cfg.out / "bench",
                config=cfg.bench,
                progress=cfg.progress,
            )
            report, paths = run_bench(request)

    _say(5, steps, "report")
    ratios = report.ratios()
    summary = PipelineSummary(
        model=cfg.model,
        artifact=str(artifact),
        library=str(library),
        bit_exact=bit_exact,
        bit_exact_images=len(q) if bit_exact else 0,
        accuracy=accuracy,
        int_ms=report.reference.median_ms,
        speedup_vs=ratios,
        headline_baseline=strongest_peer(ratios),
        reports={k: str(v) for k, v in paths.items()},
    )
    write_text_atomic(cfg.out / "pipeline.json", json.dumps(summary.as_dict(), indent=2) + "\n")
    print(report.table())
    print()
    print(
        f"accuracy (top-1, {accuracy.images} test images): FP32 {100 * accuracy.fp32_top1:.1f}%, "
        f"integer-only {100 * accuracy.int_top1:.1f}%, agreement "
        f"{100 * accuracy.agreement:.1f}%"
    )
    print(
        f"exported library {library} is bit-exact with the reference forward on {len(q)} images"
        if bit_exact
        else f"MISMATCH: {library} differs from the reference forward"
    )
    line = headline(ratios)
    if line:
        print(line)
    listed = ", ".join(str(p) for p in paths.values())
    print(f"reports: {listed}; summary: {cfg.out / 'pipeline.json'}")
    return summary


#: The FP32 build TVM 0.27 makes of a Relax model without a tuning database: it schedules
#: nothing (default lowering), so it is a weak baseline and the headline never rests on it.
UNTUNED = "TVM FP32"


def strongest_peer(ratios: dict[str, float]) -> str | None:
    """The fastest baseline measured (the smallest speed-up over it), the untuned TVM FP32
    build only when it is the sole one."""
    peers = {k: v for k, v in ratios.items() if k != UNTUNED} or ratios
    return min(peers, key=peers.get) if peers else None


def headline(ratios: dict[str, float]) -> str:
    """The speed-up over the strongest peer measured, naming it (and TVM FP32 as untuned)."""
    best = strongest_peer(ratios)
    if best is None:
        return ""
    untuned = "an untuned build: TVM schedules nothing by default"
    if best == UNTUNED:
        return (
            f"integer-only is {ratios[best]:.2f}x the speed of TVM FP32 ({untuned}), the only "
            "baseline measured (same CPU, same threads)"
        )
    text = f"integer-only is {ratios[best]:.2f}x the speed of {best}, the fastest baseline measured"
    if UNTUNED in ratios:
        text += f"; {ratios[UNTUNED]:.2f}x TVM FP32 ({untuned})"
    return text + " (same CPU, same threads)"
