"""The ranking check (AutoFormer's Table 1): a few sampled subnets retrained from scratch; the
ranking of their validation top-1 with inherited supernet weights against their ranking when
retrained, as Kendall's tau (tau-b: ties allowed)."""

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


def ranking_check(supernet: Supernet, splits, count: int = 5, epochs: int = 60, seed: int = 0):
    """Records per subnet (choice, inherited and retrained validation top-1) and tau."""
    from scipy.stats import kendalltau

    from intvit.models.hetero_vit import HeteroViT
    from intvit.models.train import TrainConfig, evaluate_float, fit

    space = supernet.space
    rows = []
    for i, choice in enumerate(spread_sample(space, count, seed)):
        with torch.no_grad():
            pred = supernet(torch.from_numpy(splits.val.images), choice).argmax(-1).numpy()
        inherited = float((pred == splits.val.labels).mean())
        torch.manual_seed(seed + i)
        model = fit(
            HeteroViT(space.arch(choice)),
            TrainConfig(epochs=epochs, seed=seed),
            False,
            train=splits.train,
        )
        rows.append(
            {
                "choice": choice.key(),
                "inherited_top1": inherited,
                "retrained_top1": evaluate_float(model, splits.val),
            }
        )
    tau = kendalltau([r["inherited_top1"] for r in rows], [r["retrained_top1"] for r in rows])
    value = float(tau.statistic) if np.isfinite(tau.statistic) else float("nan")
    return {"subnets": rows, "kendall_tau": value}
