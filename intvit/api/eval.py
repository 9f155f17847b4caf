"""``intvit eval``: FP32 against integer-only top-1, their agreement and the kernels' truncation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from intvit.api.quantize import ModelSpec, fit_config
from intvit.deploy.memory import MemoryReport
from intvit.models.data import ArraySplit
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.int_model import IntModel
from intvit.quant.reference import dequantize_logits, quantize_input, reference_forward
from intvit.topi.registry import get_variant
from intvit.topi.truncation import truncation_audit


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """One model and variant on ``images`` test images: FP32 and integer-only top-1, their
    agreement (fractions), each kernel's truncation ratio on the real activations, and with
    ``--memory`` the integer library's planned memory per inference on the host."""

    model: str
    variant: str
    fp32_top1: float
    int_top1: float
    agreement: float
    truncation: dict[str, float]
    images: int
    memory: MemoryReport | None = None

    def as_dict(self) -> dict:
        """The JSON record (``memory`` as :meth:`MemoryReport.as_dict`)."""
        body = asdict(self)
        body["memory"] = None if self.memory is None else self.memory.as_dict()
        return body

    @classmethod
    def from_dict(cls, body: dict) -> EvalResult:
        """The record :meth:`as_dict` wrote."""
        memory = body.get("memory")
        return cls(**{**body, "memory": None if memory is None else MemoryReport.from_dict(memory)})


def int_logits_with_truncation(int_model: IntModel, images: np.ndarray, batch: int = 64):
    """Integer logits and, per operator, the truncation ratio on the real activations."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def tracer(op, q, params):
        name = params.variant
        report = truncation_audit(op, name, get_variant(op, name).reference, q, params)
        counts[op][0] += report.truncated
        counts[op][1] += report.elements

    outs = []
    for s in range(0, len(images), batch):
        q = quantize_input(int_model, images[s : s + batch])
        outs.append(dequantize_logits(int_model, reference_forward(int_model, q, tracer)))
    ratios = {op: t / n if n else 0.0 for op, (t, n) in counts.items()}
    return np.concatenate(outs), ratios


def float_logits(float_model, split: ArraySplit, batch: int = 128) -> np.ndarray:
    """The float model's logits on every image of ``split``."""
    import torch

    with torch.no_grad():
        return np.concatenate(
            [float_model(torch.from_numpy(x)).numpy() for x, _ in split.batches(batch)]
        )


def library_memory(int_model: IntModel, target: str = "host") -> MemoryReport:
    """The planned memory of ``int_model``'s library for ``target`` (lowered, not built)."""
    from intvit.deploy.compile import plan_memory

    return plan_memory(int_model, target)


def check_same_model(float_model, int_model: IntModel, model_name: str) -> None:
    """ValueError unless ``int_model`` has the architecture of ``float_model`` (comparing a
    Swin with a ViT's integer model gives numbers that mean nothing)."""
    from intvit.quant.family import family_of_model

    arch = family_of_model(float_model).arch_of(float_model)
    if arch != int_model.arch:
        source = f" (calibrated from {int_model.source})" if int_model.source else ""
        raise ValueError(
            f"the integer model{source} is a {int_model.arch.family} that does not match "
            f"the float model {model_name!r} ({arch.family}); give the model it came from"
        )


def evaluate(
    float_model, int_model: IntModel, test: ArraySplit, model_name: str, memory: bool = False
) -> EvalResult:
    check_same_model(float_model, int_model, model_name)
    fp = float_logits(float_model, test)
    il, trunc = int_logits_with_truncation(int_model, test.images)
    fp_pred, int_pred = fp.argmax(1), il.argmax(1)
    label = "default" if int_model.config == QuantConfig() else int_model.config.label
    return EvalResult(
        model=model_name,
        variant=label,
        fp32_top1=float((fp_pred == test.labels).mean()),
        int_top1=float((int_pred == test.labels).mean()),
        agreement=float((fp_pred == int_pred).mean()),
        truncation=trunc,
        images=len(test),
        memory=library_memory(int_model) if memory else None,
    )


def variant_configs(base: QuantConfig = QuantConfig()) -> list[QuantConfig]:  # noqa: B008
    """The default set, each alternative for one operator at a time, and the papers' sets."""
    configs = [base]
    for sm in ("ibert", "shiftmax"):
        configs.append(replace(base, softmax=sm))
    for g in ("edge", "ibert", "shiftgelu", "sigmoid1702", "relu"):
        configs.append(replace(base, gelu=g))
    configs.append(replace(base, layernorm="ilayernorm"))
    configs.append(replace(base, softmax="shiftmax", gelu="shiftgelu", layernorm="ilayernorm"))
    configs.append(replace(base, softmax="ibert", gelu="ibert", layernorm="ilayernorm"))
    configs.append(replace(base, weight_bits=15 - base.weight_bits))  # the other width: 7 or 8
    return configs


def evaluate_variants(
    spec: ModelSpec, configs: list[QuantConfig], progress: bool = True, memory: bool = False
):
    """One float model, calibrated and evaluated once per config."""
    model = spec.load_float(progress)
    img = int(model.patch_embed.img_size[0])
    calib, test = spec.split("calib", img), spec.split("test", img)
    results = []
    iterator = configs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(configs, desc=f"eval {spec.name}", unit="config")
    seen = set()
    for cfg in iterator:
        cfg = fit_config(model, cfg)
        if cfg in seen:  # a GELU-less model collapses the GELU alternatives into one
            continue
        seen.add(cfg)
        int_model = calibrate(model, calib.images, cfg)
        results.append(evaluate(model, int_model, test, spec.name, memory))
    return results


def format_results(results: list[EvalResult]) -> str:
    """A table: top-1 (%), agreement, truncation, and the host library's planned activation
    memory and weight bytes (KiB) where measured."""
    wm = max([len("model"), *(len(r.model) for r in results)]) + 2
    wv = max([len("variant"), *(len(r.variant) for r in results)]) + 2
    head = (
        f"{'model':<{wm}}{'variant':<{wv}}{'fp32':>7}{'int':>7}{'agree':>7}"
        f"{'trunc sm/gelu/ln %':>22}{'act KiB':>10}{'weights KiB':>13}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        t = r.truncation
        trunc = "/".join(f"{100 * t.get(k, 0):.1f}" for k in ("softmax", "gelu", "layernorm"))
        mem = r.memory
        act = "-" if mem is None else f"{mem.activation_bytes / 1024:.1f}"
        wts = "-" if mem is None else f"{mem.weight_bytes / 1024:.1f}"
        lines.append(
            f"{r.model:<{wm}}{r.variant:<{wv}}{100 * r.fp32_top1:>7.2f}"
            f"{100 * r.int_top1:>7.2f}{100 * r.agreement:>7.2f}{trunc:>22}{act:>10}{wts:>13}"
        )
    return "\n".join(lines)


def save_results(results: list[EvalResult], path: str | Path) -> Path:
    import json

    from intvit.paths import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps([r.as_dict() for r in results], indent=2) + "\n")
