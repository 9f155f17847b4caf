"""``intvit relu-distill``: make a GELU-less model (seed 002), then measure what it costs:
float and integer-only top-1 of the original, the distilled GELU-less model and the
ablations (all blocks swapped at once, without and with distillation)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from intvit.api.eval import evaluate, float_logits
from intvit.api.quantize import ModelSpec, fit_config
from intvit.models.gelu_less import (
    ArrayImages,
    DistillConfig,
    distill_all_at_once,
    kd_loss,
    relu_distill,
    swap_all,
)
from intvit.paths import write_text_atomic
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig


@dataclass(frozen=True)
class DistillRequest:
    """What to distil and where: ``train_data`` an ImageFolder root (None: the digits train
    split, for the built-in models); ``spec`` gives the teacher, calibration and test data."""

    spec: ModelSpec
    out: Path
    distill: DistillConfig = field(default_factory=DistillConfig)
    train_data: str | None = None
    train_limit: int | None = None
    ablation: bool = False
    evaluate: bool = True
    progress: bool = True


@dataclass
class VariantAccuracy:
    """One model on the test split: top-1 (fractions), float and integer-only; and how close
    its float outputs stay to the original's (argmax agreement, mean KL divergence), the
    finer measure where top-1 saturates."""

    name: str
    float_top1: float
    int_top1: float
    int_variant: str
    agreement_with_original: float
    kl_to_original: float


def _train_images(req: DistillRequest, img_size: int):
    if req.train_data is not None:
        from intvit.models.data import FolderImages

        return FolderImages(req.train_data, img_size, req.train_limit)
    data = req.spec.builtin()
    if data is None:
        raise ValueError("--data is a folder: give the distillation images with --train-data too")
    return ArrayImages(data.split("train", img_size).images[: req.train_limit])


def _accuracy(name: str, model, original_logits, spec: ModelSpec, calib, test) -> VariantAccuracy:
    import torch

    config = fit_config(model, QuantConfig())
    result = evaluate(model, calibrate(model, calib.images, config), test, spec.name)
    ours, ref = (torch.from_numpy(a) for a in (float_logits(model, test), original_logits))
    kl = float(kd_loss(ours, ref, temperature=1.0))
    agree = float((ours.argmax(-1) == ref.argmax(-1)).float().mean())
    return VariantAccuracy(name, result.fp32_top1, result.int_top1, config.gelu, agree, kl)


@dataclass(frozen=True, kw_only=True)
class DistillReport:
    """A distillation run: the checkpoint written, the recipe, its wall time, and (when
    evaluated) each model's accuracy on ``test_images`` test images, the original first and
    the GELU-less student second; ``report`` is the JSON file it was written to."""

    model: str
    checkpoint: str
    distill: DistillConfig
    distill_s: float
    results: tuple[VariantAccuracy, ...] = ()
    test_images: int | None = None
    report: str = ""

    @property
    def gelu_less_minus_float_points(self) -> float | None:
        """The GELU-less integer-only top-1 minus the original's float top-1, in points."""
        if len(self.results) < 2:
            return None
        return round(100 * (self.results[1].int_top1 - self.results[0].float_top1), 2)

    def as_dict(self) -> dict:
        """The JSON written beside the checkpoint."""
        body = {
            "model": self.model,
            "checkpoint": self.checkpoint,
            "distill": asdict(self.distill),
            "distill_s": self.distill_s,
            "results": [asdict(r) for r in self.results],
        }
        if self.results:
            body["test_images"] = self.test_images
            body["int_gelu_less_minus_float_gelu_points"] = self.gelu_less_minus_float_points
        return body


def run_relu_distill(req: DistillRequest) -> DistillReport:
    """Distil (resuming ``req.out`` if it holds a partial run), evaluate, write the report
    ``<out>.json``; returns it."""
    teacher = req.spec.load_float(req.progress)
    img = int(teacher.patch_embed.img_size[0])
    data = _train_images(req, img)
    started = time.perf_counter()
    student = relu_distill(
        teacher, data, req.distill, req.out, req.spec.name, progress=req.progress
    )
    report = DistillReport(
        model=req.spec.name,
        checkpoint=str(req.out),
        distill=req.distill,
        distill_s=round(time.perf_counter() - started, 1),
    )
    if req.evaluate:
        calib, test = req.spec.split("calib", img), req.spec.split("test", img)
        models = [("original (GELU)", teacher), ("GELU-less, block by block + KD", student)]
        if req.ablation:
            models.append(("ablation: all at once, no KD", swap_all(teacher)))
            models.append(
                ("ablation: all at once + KD", distill_all_at_once(teacher, data, req.distill))
            )
        reference = float_logits(teacher, test)
        results = tuple(_accuracy(n, m, reference, req.spec, calib, test) for n, m in models)
        report = replace(report, results=results, test_images=len(test))
    path = Path(f"{req.out}.json")
    write_text_atomic(path, json.dumps(report.as_dict(), indent=1))
    return replace(report, report=str(path))


def format_report(report: DistillReport) -> str:
    lines = [
        f"{'model':<34}{'float top-1':>12}{'int top-1':>11}{'int GELU':>10}"
        f"{'agree w/ orig':>15}{'KL to orig':>12}",
    ]
    for r in report.results:
        lines.append(
            f"{r.name:<34}{100 * r.float_top1:>11.1f}%{100 * r.int_top1:>10.1f}%"
            f"{r.int_variant:>10}{100 * r.agreement_with_original:>14.1f}%"
            f"{r.kl_to_original:>12.4f}"
        )
    if report.gelu_less_minus_float_points is not None:
        lines.append(
            f"GELU-less integer-only vs original float: "
            f"{report.gelu_less_minus_float_points:+.2f} points "
            f"({report.test_images} test images)"
        )
    return "\n".join(lines)
