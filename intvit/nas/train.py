"""Supernet training (AutoFormer's Algorithm 1): each step samples one subnet uniformly from
the space and updates only its slice of the shared weights (:class:`~intvit.nas.optim.LazyAdamW`).

The checkpoint (``{"supernet", "optimizer", "epoch", "space", "config"}``) is written
atomically after every epoch; a rerun with the same space and settings resumes after the last
finished epoch, bit-identical to an uninterrupted run (each epoch's sampling and shuffling
are seeded by ``(seed, epoch)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from intvit.models.augment import check_shift, random_shift
from intvit.models.recipe import check_training_fields
from intvit.models.state import check_state_fits
from intvit.nas.optim import LazyAdamW
from intvit.nas.space import SearchSpace, space_from_dict
from intvit.nas.supernet import Supernet
from intvit.paths import torch_save_atomic

FORMAT = "intvit-supernet"


@dataclass(frozen=True)
class SupernetConfig:
    epochs: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    #: random translation of each training image by up to this many pixels, half a scanned
    #: pixel of the 32x32 digits (:mod:`intvit.models.augment`: with it the larger subnets
    #: are the better ones, as on ImageNet, instead of the data limiting them all alike)
    shift: int = 2

    def __post_init__(self) -> None:
        check_training_fields(self, ("epochs", "batch_size"))
        check_shift(self.shift)


def _save(path: Path, body: dict) -> None:
    torch_save_atomic(body, path)


def load_supernet(path: str | Path) -> tuple[Supernet, dict]:
    """The supernet in a checkpoint and the checkpoint's fields; ValueError naming the file
    when it is missing, unreadable or not a supernet."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"supernet checkpoint {str(path)!r} does not exist")
    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or format errors all mean the same to a user
        raise ValueError(f"{str(path)!r} is not a readable checkpoint: {err}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an intvit supernet checkpoint")
    missing = [k for k in ("space", "supernet") if k not in body]
    if missing:
        raise ValueError(f"supernet checkpoint {str(path)!r} lacks {', '.join(missing)}")
    space = space_from_dict(body["space"], f"the space in {str(path)!r}")
    net = Supernet(space)
    if not isinstance(body["supernet"], dict):
        raise ValueError(f"supernet checkpoint {str(path)!r}: 'supernet' is no state dict")
    check_state_fits(net, body["supernet"], f"supernet checkpoint {str(path)!r}")
    net.load_state_dict(body["supernet"])
    return net.eval(), body


def train_supernet(
    space: SearchSpace,
    train,
    out: str | Path,
    cfg: SupernetConfig = SupernetConfig(),
    progress: bool = True,
    data_name: str = "digits",
) -> Path:
    """Train the supernet of ``space`` on ``train`` (an ``ArraySplit``) for ``cfg.epochs``,
    resuming from ``out`` when it holds a run of the same space and settings."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = Supernet(space)
    opt = LazyAdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if out.exists():
        _, body = load_supernet(out)
        if body["space"] != space.to_dict():
            raise ValueError(f"{out} is a supernet of another space; choose another -o")
        if body["config"] != asdict(cfg):
            raise ValueError(
                f"{out} was trained with {body['config']}; resume with the same settings "
                f"(asked: {asdict(cfg)}) or choose another -o"
            )
        net.load_state_dict(body["supernet"])
        opt.load_state_dict(body["optimizer"])
        start = int(body["epoch"])
    epochs = range(start, cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="train supernet", unit="epoch", initial=start, total=cfg.epochs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic across machines; the digits supernet is tiny
    try:
        for epoch in epochs:
            train_epoch(net, opt, space, train, cfg, epoch)
            body = {
                "format": FORMAT,
                "supernet": net.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "space": space.to_dict(),
                "config": asdict(cfg),
                "data": data_name,
            }
            _save(out, body)
    finally:
        torch.set_num_threads(threads)
    return out


def _lr(cfg: SupernetConfig, epoch: int) -> float:
    """Cosine decay from ``cfg.lr`` over the epochs (per epoch, so a resumed run matches)."""
    return float(0.5 * cfg.lr * (1 + np.cos(np.pi * epoch / cfg.epochs)))


def train_epoch(net: Supernet, opt, space: SearchSpace, train, cfg: SupernetConfig, epoch: int):
    """One epoch of Algorithm 1: each batch samples one subnet of ``space`` (seeded by
    ``(cfg.seed, epoch)``) and updates its slice of ``net``."""
    net.train()
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    for group in opt.param_groups:
        group["lr"] = _lr(cfg, epoch)
    order = rng.permutation(len(train))
    for i in range(0, len(order), cfg.batch_size):
        idx = order[i : i + cfg.batch_size]
        choice = space.sample(rng)
        x = torch.from_numpy(random_shift(train.images[idx], rng, cfg.shift))
        y = torch.from_numpy(train.labels[idx])
        loss = torch.nn.functional.cross_entropy(net(x, choice), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
