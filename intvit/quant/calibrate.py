"""Post-training calibration: float timm ViT/DeiT + calibration images -> :class:`IntModel`."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from intvit.quant.config import QuantConfig
from intvit.quant.family import family_of_model
from intvit.quant.int_model import IntModel
from intvit.quant.observers import make_observer
from intvit.quant.weights import _np, quantize_weight
from intvit.topi.registry import get_variant
from intvit.topi.softmax_mstar import select_m_star

__all__ = ["calibrate", "quantize_weight"]

#: Score rows kept per block to choose the edge softmax's M*.
SCORE_ROWS = 512


def calibrate(
    model,
    images: np.ndarray,
    config: QuantConfig | None = None,
    batch_size: int = 32,
    progress: bool = False,
    source: str = "",
) -> IntModel:
    """Observe ``model`` on float ``images [N, C, H, W]`` and build the integer model."""
    import torch

    config = config or QuantConfig()
    family = family_of_model(model)
    arch, forward = family.arch_of(model), family.shadow_forward
    from intvit.quant.activation import mlp_activation

    gelu, softmax = get_variant("gelu", config.gelu), get_variant("softmax", config.softmax)
    if mlp_activation(model) == "relu" and not gelu.fused_relu:
        raise ValueError(
            f"the model is GELU-less (ReLU MLPs); its integer model needs gelu='relu', "
            f"not {config.gelu!r}"
        )
    images = np.asarray(images, dtype=np.float32)
    if images.shape[0] == 0:
        raise ValueError("the calibration set is empty; give at least one image")
    expected = (arch.in_chans, arch.img_size, arch.img_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"calibration images have shape {tuple(images.shape)}; the model expects "
            f"[N, {expected[0]}, {expected[1]}, {expected[2]}]"
        )
    observers = defaultdict(lambda: make_observer(config.observer))
    rows: dict[str, list[np.ndarray]] = defaultdict(list)

    def observe(name, t):
        x = _np(t)
        observers[name].update(x)
        if name.endswith(".scores") and sum(len(r) for r in rows[name]) < SCORE_ROWS:
            rows[name].append(x.reshape(-1, x.shape[-1])[:SCORE_ROWS])

    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="calibrate", unit="batch")
    with torch.no_grad():
        for s in starts:
            forward(model, torch.from_numpy(images[s : s + batch_size]), observe)

    res_qmax = 2 ** (config.residual_bits - 1) - 1
    # GELU-less models feed fc2 uint8 (the ReLU output is never negative).
    act_qmax = 255 if gelu.fused_relu else 127
    scales = {}
    for name, obs in observers.items():
        last = name.split(".")[-1]
        qmax = res_qmax if last.startswith("res") or last == "pe" else 127
        qmax = act_qmax if last == "gelu" else qmax
        scales[name] = max(obs.amax(qmax), 1e-8) / qmax

    tensors = family.quantize_weights(model, arch, scales, config.weight_bits)
    m_star = []
    if softmax.calibrated_m_star:
        for i in range(arch.num_blocks):
            name = f"b{i}.scores"
            s = scales[name]
            q = np.clip(np.round(np.concatenate(rows[name]) / s), -128, 127).astype(np.int8)
            m_star.append(select_m_star(q, s, config.softmax_bits, config.m_star_method))
    return IntModel(arch, config, scales, tensors, m_star, source)
