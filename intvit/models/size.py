"""Refusing a model before it is allocated: an arch or a search space whose parameters would
not fit this machine's memory is a one-line error with the figures, not an allocator
traceback a minute later."""

from __future__ import annotations

#: Copies of every parameter that training holds: the weights, their gradients and AdamW's
#: two moments (activations come on top).
TRAINING_COPIES = 4


def check_fits_memory(params: int, what: str, copies: int = TRAINING_COPIES) -> None:
    """ValueError when ``copies`` float32 copies of ``params`` parameters exceed the memory
    this machine has available."""
    import psutil

    need = 4 * copies * params
    available = psutil.virtual_memory().available
    if need > available:
        raise ValueError(
            f"{what} has {params:,} parameters: {need / 2**30:,.1f} GiB to train "
            f"({copies} float32 copies), more than the {available / 2**30:,.1f} GiB this "
            "machine has available"
        )
