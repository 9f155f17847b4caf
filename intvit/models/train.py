"""Train the small built-in models on the digits data (a few minutes on one core)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.models.data import digits
from intvit.models.zoo import SMALL_CONFIGS, create_float_model


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


def cache_dir() -> Path:
    root = os.environ.get("INTVIT_CACHE") or Path.home() / ".cache" / "intvit"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_path(name: str) -> Path:
    return cache_dir() / f"{name}.pt"


def evaluate_float(model, split) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for x, y in split.batches(256):
            correct += int((model(torch.from_numpy(x)).argmax(-1).numpy() == y).sum())
    return correct / len(split)


def train_small(name: str, cfg: TrainConfig = TrainConfig(), progress: bool = True) -> Path:
    """Train ``name`` (a small config) on digits and save its state dict; returns the path."""
    import torch

    if name not in SMALL_CONFIGS:
        raise ValueError(f"{name!r} is not a small config; choose from {sorted(SMALL_CONFIGS)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic across machines; the model is tiny
    try:
        return _train(name, cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _train(name: str, cfg: TrainConfig, progress: bool) -> Path:
    import torch

    torch.manual_seed(cfg.seed)
    model = create_float_model(name).train()
    train = digits("train")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    rng = np.random.default_rng(cfg.seed)
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=f"train {name}", unit="epoch")
    for _ in epochs:
        order = rng.permutation(len(train))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = torch.from_numpy(train.images[idx])
            y = torch.from_numpy(train.labels[idx])
            out = model(x)
            if isinstance(out, tuple):  # distilled DeiT in train mode: (cls, dist)
                loss = sum(torch.nn.functional.cross_entropy(o, y) for o in out) / 2
            else:
                loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    path = checkpoint_path(name)
    torch.save(model.eval().state_dict(), path)
    return path


def ensure_trained(name: str, progress: bool = True) -> Path:
    """The cached checkpoint of a small model, training it on first use."""
    path = checkpoint_path(name)
    return path if path.is_file() else train_small(name, progress=progress)
