"""``intvit train``: a heterogeneous ViT (an arch JSON, or a shipped one) trained from scratch
on a built-in data set, saved with its arch for ``intvit quantize``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from intvit.models.recipe import TrainConfig


@dataclass(frozen=True)
class TrainRequest:
    arch: str  # a shipped arch name or an arch JSON file
    out: Path
    config: TrainConfig = field(default_factory=TrainConfig)
    progress: bool = True
    data: str = "digits"  # a built-in data set


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    params: int
    data: str
    #: float top-1 on the data set's test split, a fraction
    top1: float


def run_train(req: TrainRequest) -> TrainResult:
    """Train, save, and report the float top-1 on the data set's test split."""
    from intvit.models.datasets import builtin_data
    from intvit.models.hetero_vit import load_hetero_checkpoint, resolve_arch
    from intvit.models.train import evaluate_float, train_arch

    data = builtin_data(req.data)
    arch = resolve_arch(req.arch)
    if arch.in_chans != 1 or arch.num_classes != data.classes:
        raise ValueError(
            f"the {data.name} data are single-channel images of {data.classes} classes; the "
            f"arch has in_chans={arch.in_chans}, num_classes={arch.num_classes}"
        )
    path = train_arch(arch, req.out, req.config, req.progress, data.name)
    model = load_hetero_checkpoint(path)
    params = sum(p.numel() for p in model.parameters())
    top1 = evaluate_float(model, data.split("test", arch.img_size))
    return TrainResult(Path(path), params, data.name, top1)
