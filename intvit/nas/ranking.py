"""The ranking check (AutoFormer's Table 1): a few sampled subnets retrained from scratch; the
ranking of their top-1 with inherited supernet weights against their ranking when retrained
(the mean over a few seeds), as Kendall's tau (tau-b: ties allowed)."""

from __future__ import annotations

import numpy as np
import torch

from intvit.nas.space import SubnetChoice
from intvit.nas.supernet import Supernet


def spread_sample(space, count: int, seed: int = 0) -> list[SubnetChoice]:
    """``count`` distinct subnets spread over the space's sizes: drawn uniformly, then the
    ones at evenly spaced quantiles of their MACs (a ranking of near-equal subnets says
    little)."""
    from intvit.nas.cost import macs

    rng = np.random.default_rng([seed, 11])
    pool = list({c.key(): c for c in (space.sample(rng) for _ in range(20 * count))}.values())
    pool.sort(key=lambda c: macs(space.arch(c)))
    idx = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in idx]


def _ranked_split(splits):
    """Validation and test images together: the ranking check selects nothing (its figure is
    reported, never fed back into the search), so every image the supernet and the retrained
    subnets never trained on counts; on digits 700 images instead of 200, one image 0.14%."""
    from intvit.models.data import ArraySplit

    return ArraySplit(
        np.concatenate([splits.val.images, splits.test.images]),
        np.concatenate([splits.val.labels, splits.test.labels]),
    )


def ranking_check(
    supernet: Supernet,
    splits,
    count: int = 5,
    epochs: int = 60,
    seed: int = 0,
    seeds: int = 3,
    progress: bool = False,
    shift: int = 0,
):
    """Records per subnet (choice, inherited top-1, retrained top-1 per seed and their mean)
    and Kendall's tau of the inherited against the mean retrained top-1, both on the
    validation and test images (:func:`_ranked_split`). Each subnet is retrained from scratch
    ``seeds`` times (initialisation and data order from the seed): one retraining's top-1
    varies by more than the gaps between subnets of a small space, so one run ranks noise.
    ``shift`` is the retraining's augmentation: the supernet's, for the same recipe."""
    from scipy.stats import kendalltau

    from intvit.models.hetero_vit import HeteroViT
    from intvit.models.train import TrainConfig, evaluate_float, fit

    if seeds < 1:
        raise ValueError(f"seeds={seeds} must be >= 1")
    space = supernet.space
    ranked = _ranked_split(splits)
    rows = []
    for i, choice in enumerate(spread_sample(space, count, seed)):
        with torch.no_grad():
            pred = supernet(torch.from_numpy(ranked.images), choice).argmax(-1).numpy()
        inherited = float((pred == ranked.labels).mean())
        retrained = []
        for s in range(seeds):
            run_seed = seed + 1000 * s + i
            torch.manual_seed(run_seed)
            model = fit(
                HeteroViT(space.arch(choice)),
                TrainConfig(epochs=epochs, seed=run_seed, shift=shift),
                progress,
                f"retrain subnet {i + 1}/{count}, seed {s + 1}/{seeds}",
                train=splits.train,
            )
            retrained.append(evaluate_float(model, ranked))
        rows.append(
            {
                "choice": choice.key(),
                "inherited_top1": inherited,
                "retrained_top1": float(np.mean(retrained)),
                "retrained_top1_runs": retrained,
            }
        )
    tau = kendalltau([r["inherited_top1"] for r in rows], [r["retrained_top1"] for r in rows])
    value = float(tau.statistic) if np.isfinite(tau.statistic) else float("nan")
    return {"subnets": rows, "kendall_tau": value, "images": len(ranked), "seeds": seeds}
