"""Fine-tuning an extracted subnet: its inherited supernet weights as the starting point of
an ordinary training run (:func:`~intvit.models.train.fit`) on every labelled image the search
had, the supernet's train split and the search's validation split together (the validation
split has done its job once the search has chosen). The test split stays unseen.

AutoFormer deploys inherited weights as they are; once-for-all style pipelines fine-tune them.
``FinetuneConfig`` is :class:`~intvit.models.train.TrainConfig` (epochs, lr, weight decay,
seed, shift), so a fine-tuned subnet and a model trained from scratch can share one recipe and
differ only in where their weights start.
"""

from __future__ import annotations

import numpy as np

from intvit.models.data import ArraySplit
from intvit.models.train import TrainConfig, fit_seeded
from intvit.nas.data import SearchData

FinetuneConfig = TrainConfig


def finetune_split(splits: SearchData) -> ArraySplit:
    """The images fine-tuning trains on: ``splits.train`` followed by ``splits.val``."""
    return ArraySplit(
        np.concatenate([splits.train.images, splits.val.images]),
        np.concatenate([splits.train.labels, splits.val.labels]),
    )


def finetune(model, splits: SearchData, cfg: FinetuneConfig, progress: bool = True):
    """``model`` (an extracted :class:`~intvit.models.hetero_vit.HeteroViT`, changed in place)
    trained with ``cfg`` on :func:`finetune_split`, seeded by ``cfg.seed`` on one torch
    thread (the same weights on every machine); returned in eval mode."""
    return fit_seeded(
        lambda: model, cfg, progress, desc="fine-tune subnet", train=finetune_split(splits)
    )
