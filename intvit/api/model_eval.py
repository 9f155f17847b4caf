"""``intvit quantize`` and ``intvit eval``: calibrate, save, and compare FP32 with integer-only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from intvit.models.data import ArraySplit, image_folder
from intvit.models.datasets import BuiltinData, builtin_data, is_builtin
from intvit.models.zoo import SMALL_CONFIGS, load_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.int_model import IntModel
from intvit.quant.reference import dequantize_logits, quantize_input, reference_forward
from intvit.topi.registry import get_variant
from intvit.topi.truncation import truncation_audit


@dataclass(frozen=True)
class ModelSpec:
    """Where a float model and its data come from."""

    name: str
    checkpoint: str | None = None
    pretrained: bool = False
    #: a built-in data set's name or an ImageFolder root; None: the model's own built-in data
    data: str | None = None
    #: calibration images; None: the whole calibration split of built-in data, 97 of a folder
    calib_count: int | None = None
    #: test images; None: all of them
    test_count: int | None = None

    def load_float(self, progress: bool = True):
        checkpoint = self.checkpoint
        if checkpoint is None and self.name in SMALL_CONFIGS and not self.pretrained:
            from intvit.models.train import ensure_trained

            checkpoint = ensure_trained(self.name, progress=progress)
        return load_float_model(self.name, self.pretrained, checkpoint)

    def own_data(self) -> str | None:
        """The built-in data set the model was made for: a small config's, or the one a
        checkpoint records it was trained on (None for timm models)."""
        from intvit.models.hetero_vit import checkpoint_meta

        if self.name in SMALL_CONFIGS:
            return SMALL_CONFIGS[self.name].data
        return checkpoint_meta(self.name).get("data")

    def builtin(self) -> BuiltinData | None:
        """The built-in data set the splits come from, or None for an ImageFolder."""
        name = self.own_data() if self.data is None else self.data
        if name is None:
            raise ValueError(f"model {self.name!r} needs --data (an ImageFolder root)")
        return builtin_data(name) if is_builtin(name) else None

    def split(self, which: str, img_size: int) -> ArraySplit:
        """The calibration (``calib``) or ``test`` images at ``img_size`` pixels."""
        limit = self.calib_count if which == "calib" else self.test_count
        data = self.builtin()
        if data is None:
            default = 97 if which == "calib" else None
            return image_folder(str(self.data), img_size, default if limit is None else limit)
        name = data.calib if which == "calib" else "test"
        split = data.split(name, img_size)
        if limit is None:
            return split
        if limit > len(split):
            flag = "--calib" if which == "calib" else "--limit"
            raise ValueError(
                f"{flag} {limit}: the {data.name} {name} split holds {len(split)} images"
            )
        return ArraySplit(split.images[:limit], split.labels[:limit])


def fit_config(model, config: QuantConfig) -> QuantConfig:
    """``config`` for ``model``: a GELU-less model (ReLU MLPs, see ``intvit relu-distill``)
    has no GELU to approximate, so its GELU variant is ``relu`` whatever else was asked."""
    from intvit.models.gelu_less import mlp_activation

    return replace(config, gelu="relu") if mlp_activation(model) == "relu" else config


def quantize(spec: ModelSpec, config: QuantConfig, progress: bool = True, fit: bool = True):
    """Calibrate ``spec``'s float model on its calibration split; returns (float, integer).
    ``fit``: switch GELU-less models to the ``relu`` variant (else a mismatch is an error)."""
    model = spec.load_float(progress)
    config = fit_config(model, config) if fit else config
    img = int(model.patch_embed.img_size[0])
    calib = spec.split("calib", img)
    source = spec.checkpoint or (
        spec.name if spec.pretrained else f"{spec.name} ({spec.own_data() or spec.data})"
    )
    return model, calibrate(model, calib.images, config, progress=progress, source=source)


@dataclass
class EvalResult:
    model: str
    variant: str
    fp32_top1: float
    int_top1: float
    agreement: float
    truncation: dict[str, float]
    images: int
    #: the integer library's memory per inference on the host (a MemoryReport dict)
    memory: dict | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


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


def library_memory(int_model: IntModel, target: str = "host") -> dict:
    """The planned memory of ``int_model``'s library for ``target`` (lowered, not built)."""
    from intvit.deploy.compile import plan_memory

    return plan_memory(int_model, target).as_dict()


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
        model_name,
        label,
        float((fp_pred == test.labels).mean()),
        float((int_pred == test.labels).mean()),
        float((fp_pred == int_pred).mean()),
        trunc,
        len(test),
        library_memory(int_model) if memory else None,
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
        mem = r.memory or {}
        act = f"{mem['activation_bytes'] / 1024:.1f}" if mem else "-"
        wts = f"{mem['weight_bytes'] / 1024:.1f}" if mem else "-"
        lines.append(
            f"{r.model:<{wm}}{r.variant:<{wv}}{100 * r.fp32_top1:>7.2f}"
            f"{100 * r.int_top1:>7.2f}{100 * r.agreement:>7.2f}{trunc:>22}{act:>10}{wts:>13}"
        )
    return "\n".join(lines)


def save_results(results: list[EvalResult], path: str | Path) -> Path:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    return path
