"""Train the small built-in models on their built-in data (minutes on one core), and cache
each checkpoint under a name keyed by its config, data and recipe."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from intvit.models.augment import random_shift
from intvit.models.datasets import builtin_data, digits
from intvit.models.recipe import TrainConfig
from intvit.models.zoo import SMALL_CONFIGS, SmallConfig, create_float_model
from intvit.paths import cache_dir, torch_save_atomic

#: Bumped when the training loop itself changes what a recipe produces.
TRAINING_CODE_VERSION = 1


def recipe_key(config: SmallConfig) -> str:
    """12 hex digits of a hash of what the zoo checkpoint of ``config`` depends on: its timm
    model and arguments, its data set and its recipe. A changed recipe gets a new file, never
    a stale checkpoint."""
    what = {
        "timm": config.timm_name,
        "kwargs": config.kwargs,
        "data": config.data,
        "recipe": asdict(config.recipe),
        "code": TRAINING_CODE_VERSION,
    }
    text = json.dumps(what, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_path(name: str) -> Path:
    """Where the zoo checkpoint of the small config ``name`` is cached."""
    return cache_dir() / f"{name}-{recipe_key(SMALL_CONFIGS[name])}.pt"


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


def train_small(name: str, progress: bool = True) -> Path:
    """Train ``name`` (a small config) with its recipe on the train split of its data set and
    cache its state dict; returns the path."""
    if name not in SMALL_CONFIGS:
        raise ValueError(f"{name!r} is not a small config; choose from {sorted(SMALL_CONFIGS)}")
    config = SMALL_CONFIGS[name]
    data = builtin_data(config.data)
    train = data.split("train", int(config.kwargs["img_size"]))
    model = fit_seeded(
        lambda: create_float_model(name), config.recipe, progress, f"train {name}", train
    )
    path = checkpoint_path(name)
    torch_save_atomic(model.state_dict(), path)
    return path


def train_arch(
    arch,
    out: str | Path,
    cfg: TrainConfig = TrainConfig(),  # noqa: B008 (frozen)
    progress: bool = True,
    data: str = "digits",
):
    """Train the heterogeneous ViT of ``arch`` (a :class:`~intvit.quant.arch.VitArch`) from
    scratch on the train split of the built-in ``data`` and save it with its arch and the
    data's name (``intvit quantize OUT`` takes it)."""
    from intvit.models.hetero_vit import HeteroViT, save_hetero_checkpoint

    train = builtin_data(data).split("train", arch.img_size)
    model = fit_seeded(lambda: HeteroViT(arch), cfg, progress, train=train)
    return save_hetero_checkpoint(model, out, data=data, train=asdict(cfg))


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
