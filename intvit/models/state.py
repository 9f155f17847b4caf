"""Checking a state dict against the model it is loaded into."""

from __future__ import annotations


def check_state_fits(model, state: dict, what: str) -> None:
    """ValueError ``what (detail)`` naming the first tensors that ``state`` lacks, has extra,
    shapes differently from ``model`` (a torch module), or that hold NaN or inf."""
    import torch

    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} (arch: {tuple(own[k].shape)})"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    nonfinite = sorted(
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    )
    found = (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape differs", wrong),
        ("NaN or inf in", nonfinite),
    )
    if any(keys for _, keys in found):
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in found
            if keys
        )
        raise ValueError(f"{what} ({detail})")
