"""Train the small built-in models on the digits data (a few minutes on one core)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from intvit.models.augment import check_shift, random_shift
from intvit.models.data import digits
from intvit.models.zoo import SMALL_CONFIGS, create_float_model


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    #: random translation of each training image by up to this many pixels
    #: (:func:`~intvit.models.augment.random_shift`); 0, the zoo models' recipe, is none
    shift: int = 0

    def __post_init__(self) -> None:
        check_training_fields(self, ("epochs", "batch_size"))
        check_shift(self.shift)


def check_training_fields(config, counts: tuple[str, ...]) -> None:
    """ValueError naming the first of ``counts`` that is not an integer >= 1, or an ``lr``
    that is not > 0 (a training config dataclass's validation)."""
    for name in counts:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if not config.lr > 0:
        raise ValueError(f"lr={config.lr} must be > 0")


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


def _single_thread(fn):
    """Run ``fn`` on one torch thread: deterministic across machines (the models are tiny)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def fit_seeded(
    make_model, cfg: TrainConfig, progress: bool = True, desc: str = "train", train=None
):
    """``make_model()`` built after seeding torch with ``cfg.seed`` and :func:`fit` (on
    ``train``, default the digits train split) on one torch thread (the zoo's recipe: the
    same weights on every machine)."""
    import torch

    def run():
        torch.manual_seed(cfg.seed)
        return fit(make_model(), cfg, progress, desc, train)

    return _single_thread(run)


def train_small(name: str, cfg: TrainConfig = TrainConfig(), progress: bool = True) -> Path:
    """Train ``name`` (a small config) on digits and save its state dict; returns the path."""
    import torch

    if name not in SMALL_CONFIGS:
        raise ValueError(f"{name!r} is not a small config; choose from {sorted(SMALL_CONFIGS)}")
    model = fit_seeded(lambda: create_float_model(name), cfg, progress, f"train {name}")
    path = checkpoint_path(name)
    torch.save(model.state_dict(), path)
    return path


def train_arch(arch, out: str | Path, cfg: TrainConfig = TrainConfig(), progress: bool = True):
    """Train the heterogeneous ViT of ``arch`` (a :class:`~intvit.quant.arch.VitArch`) from
    scratch on digits and save it with its arch (``intvit quantize OUT`` takes it)."""
    from intvit.models.hetero_vit import HeteroViT, save_hetero_checkpoint

    model = fit_seeded(lambda: HeteroViT(arch), cfg, progress)
    return save_hetero_checkpoint(model, out, data="digits", train=asdict(cfg))


def fit(model, cfg: TrainConfig, progress: bool = True, desc: str = "train", train=None):
    """``model`` trained on ``train`` (an ``ArraySplit``; default the digits train split) with
    AdamW and a cosine schedule, each batch shifted by up to ``cfg.shift`` pixels, in eval
    mode."""
    import torch

    model.train()
    train = digits("train") if train is None else train
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    rng = np.random.default_rng(cfg.seed)
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=desc, unit="epoch")
    for _ in epochs:
        order = rng.permutation(len(train))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = torch.from_numpy(random_shift(train.images[idx], rng, cfg.shift))
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
    return model.eval()


def ensure_trained(name: str, progress: bool = True) -> Path:
    """The cached checkpoint of a small model, training it on first use."""
    path = checkpoint_path(name)
    return path if path.is_file() else train_small(name, progress=progress)
