"""GELU-less models (seed 002): the MLP activation of every transformer block becomes ReLU and
the first MLP linear layer loses its bias, one block at a time, with knowledge distillation
from the original float model after each swap (the seed's Algorithm 1).

The result is a float timm model whose MLPs compute ``fc2(relu(fc1_nobias(x)))``. Its integer
version needs no activation kernel: ReLU followed by a requantization to uint8 is exactly the
saturating requantization of the fc1 accumulator (see :mod:`intvit.quant.plan_common`), so it
runs in the epilogue of the fc1 GEMM.

Checkpoints are ``{"model": state_dict, "intvit": {"relu_blocks": [...], ...}}``: the list of
blocks already swapped, which :func:`intvit.models.zoo.create_float_model` applies before
loading the weights, and which lets an interrupted run resume after its last finished block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from intvit.paths import torch_save_atomic
from intvit.quant.activation import (  # noqa: F401  (part of the GELU-less API)
    block_activation,
    mlp_activation,
    relu_blocks,
    transformer_blocks,
)

#: Checkpoint metadata key (beside ``"model"``).
META_KEY = "intvit"


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation per swapped block (defaults: the seed's SGD, lr 1e-2,
    momentum 0.9, batch 32; one epoch per block as there, configurable)."""

    epochs_per_block: int = 1
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs_per_block < 0:
            raise ValueError(f"epochs_per_block={self.epochs_per_block} must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")


def swap_to_relu(block) -> None:
    """Lines 4-6 of the seed's Algorithm 1: ReLU activation, fc1 bias zero and frozen."""
    import torch

    block.mlp.act = torch.nn.ReLU()
    fc1 = block.mlp.fc1
    if fc1.bias is None:
        fc1.bias = torch.nn.Parameter(torch.zeros(fc1.out_features), requires_grad=False)
    with torch.no_grad():
        fc1.bias.zero_()
    fc1.bias.requires_grad_(False)


def apply_relu_blocks(model, indices: Sequence[int]) -> None:
    """Swap the listed blocks (a checkpoint's ``relu_blocks``) before loading its weights."""
    blocks = transformer_blocks(model)
    for i in indices:
        if not 0 <= i < len(blocks):
            raise ValueError(f"relu block {i} does not exist (the model has {len(blocks)})")
        swap_to_relu(blocks[i])


def save_checkpoint(model, path: Path, meta: dict) -> Path:
    """Write ``{"model": state, "intvit": meta}`` atomically (a kill never leaves half a file)."""

    return torch_save_atomic({"model": model.state_dict(), META_KEY: meta}, path)


def read_meta(path: Path) -> dict:
    """A checkpoint's intvit metadata (empty for a plain state dict)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return dict(state.get(META_KEY, {})) if isinstance(state, dict) else {}


def kd_loss(student_logits, teacher_logits, temperature: float):
    """KL(teacher soft labels || student), scaled by ``T**2`` (Hinton et al.)."""
    import torch.nn.functional as F

    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student_logits / t, dim=-1),
            F.log_softmax(teacher_logits / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def _logits(model, x):
    out = model(x)
    if isinstance(out, tuple):  # distilled DeiT in train mode: (cls, dist), averaged as in eval
        out = (out[0] + out[1]) / 2
    return out


class TrainImages(Protocol):
    """Training images for distillation, one shuffled pass at a time (labels unused: the
    teacher's soft labels are the targets)."""

    def epoch(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        """float32 ``[B, C, H, W]`` batches in an order fixed by ``seed``."""
        ...


@dataclass(frozen=True)
class ArrayImages:
    """Images held in memory (the built-in digits)."""

    images: np.ndarray

    def epoch(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        order = np.random.default_rng(seed).permutation(len(self.images))
        for s in range(0, len(order), batch_size):
            yield self.images[order[s : s + batch_size]]


def kd_epochs(
    student, teacher, data: TrainImages, cfg: DistillConfig, seed: int, epochs: int
) -> float:
    """``epochs`` epochs distilling ``teacher`` into ``student`` (a fresh SGD, seeded by
    ``seed``, so that a resumed run repeats a stage exactly); returns the last loss."""
    import torch

    torch.manual_seed(seed)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    student.train()
    teacher.eval()
    loss_value = float("nan")
    for e in range(epochs):
        for batch in data.epoch(cfg.batch_size, seed * 1000 + e):
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            with torch.no_grad():
                target = _logits(teacher, x)
            loss = kd_loss(_logits(student, x), target, cfg.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_value = float(loss.detach())
    student.eval()
    return loss_value


#: ``on_stage(block_index, student, last_loss)`` after each finished block.
StageHook = Callable[[int, object, float], None]


def relu_distill(
    teacher,
    data: TrainImages,
    cfg: DistillConfig,
    out: Path,
    base: str,
    progress: bool = True,
    on_stage: StageHook | None = None,
):
    """The seed's Algorithm 1 on float ``teacher``: returns the GELU-less student.

    After every block the student is saved to ``out`` (with the blocks done so far); when
    ``out`` already holds a run for the same ``base`` model and config, it resumes after its
    last finished block.
    """
    import torch

    meta = {"base": base, "config": asdict(cfg), "relu_blocks": []}
    student = clone_student(teacher)
    out = Path(out)
    if out.is_file():
        state = torch.load(out, map_location="cpu", weights_only=True)
        done = _resume_blocks(state, out, base, cfg)
        apply_relu_blocks(student, done)
        student.load_state_dict(state["model"])
        meta["relu_blocks"] = done
    blocks = transformer_blocks(student)
    todo = [i for i in range(len(blocks)) if i not in meta["relu_blocks"]]
    if todo and todo[0] != len(meta["relu_blocks"]):
        raise ValueError(f"{out}: blocks {meta['relu_blocks']} are not a prefix; start afresh")
    stages = todo
    if progress:
        from tqdm import tqdm

        stages = tqdm(
            todo,
            desc="relu-distill",
            unit="block",
            initial=len(blocks) - len(todo),
            total=len(blocks),
        )
    for i in stages:
        swap_to_relu(blocks[i])
        loss = kd_epochs(student, teacher, data, cfg, cfg.seed + i, cfg.epochs_per_block)
        meta["relu_blocks"] = [*meta["relu_blocks"], i]
        save_checkpoint(student, out, meta)
        if progress:
            stages.set_postfix(block=i, kd_loss=f"{loss:.4f}")
        if on_stage is not None:
            on_stage(i, student, loss)
    return student.eval()


def _resume_blocks(state, out: Path, base: str, cfg: DistillConfig) -> list[int]:
    """The blocks a saved run (``state``, loaded from ``out``) finished, if it is this run."""
    meta = state.get(META_KEY, {}) if isinstance(state, dict) else {}
    if "relu_blocks" not in meta:
        raise ValueError(f"{out} exists and is not a relu-distill checkpoint; move it away")
    if meta.get("base") != base:
        raise ValueError(f"{out} is a run for {meta.get('base')!r}, not {base!r}")
    if meta.get("config") != asdict(cfg):
        raise ValueError(
            f"{out} was made with {meta.get('config')}; resume with the same settings "
            f"(asked: {asdict(cfg)}) or choose another --out"
        )
    return [int(i) for i in meta["relu_blocks"]]


def clone_student(teacher):
    """A trainable copy of ``teacher`` (line 1 of Algorithm 1), whatever the teacher's own
    ``requires_grad`` flags are (the teacher only ever runs under ``no_grad``)."""
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    return student


def swap_all(teacher):
    """The ablation: every block swapped at once, no distillation."""
    student = clone_student(teacher)
    for blk in transformer_blocks(student):
        swap_to_relu(blk)
    return student.eval()


def distill_all_at_once(teacher, data: TrainImages, cfg: DistillConfig):
    """The second ablation: every block swapped at once, then distilled for as many epochs
    as the block-by-block run takes in all (``blocks * epochs_per_block``)."""
    student = swap_all(teacher)
    epochs = len(transformer_blocks(student)) * cfg.epochs_per_block
    kd_epochs(student, teacher, data, cfg, cfg.seed, epochs)
    return student.eval()
