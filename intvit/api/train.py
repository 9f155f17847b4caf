"""``intvit train``: a heterogeneous ViT (an arch JSON, or a shipped one) trained from scratch
on the built-in digits data, saved with its arch for ``intvit quantize``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from intvit.models.train import TrainConfig


@dataclass(frozen=True)
class TrainRequest:
    arch: str  # a shipped arch name or an arch JSON file
    out: Path
    config: TrainConfig = field(default_factory=TrainConfig)
    progress: bool = True


def run_train(req: TrainRequest) -> dict:
    """Train, save, and report the float top-1 on the digits test split."""
    from intvit.models.data import digits
    from intvit.models.hetero_vit import load_hetero_checkpoint, resolve_arch
    from intvit.models.train import evaluate_float, train_arch

    arch = resolve_arch(req.arch)
    if arch.in_chans != 1 or arch.img_size != 32 or arch.num_classes != 10:
        raise ValueError(
            "the digits data are 1x32x32 images of 10 classes; the arch has "
            f"in_chans={arch.in_chans}, img_size={arch.img_size}, num_classes={arch.num_classes}"
        )
    path = train_arch(arch, req.out, req.config, req.progress)
    model = load_hetero_checkpoint(path)
    params = sum(p.numel() for p in model.parameters())
    return {
        "checkpoint": str(path),
        "params": params,
        "top1": evaluate_float(model, digits("test")),
    }
