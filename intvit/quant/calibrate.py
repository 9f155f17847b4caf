"""Post-training calibration: float timm ViT/DeiT + calibration images -> :class:`IntModel`."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from intvit.quant.config import QuantConfig
from intvit.quant.int_vit import LINEARS, IntModel
from intvit.quant.observers import make_observer
from intvit.quant.shadow import shadow_forward, vit_arch
from intvit.topi.softmax_mstar import select_m_star

#: Score rows kept per block to choose the edge softmax's M*.
SCORE_ROWS = 512


def quantize_weight(w: np.ndarray, b: np.ndarray | None, in_scale: float, bits: int = 8):
    """Symmetric per output channel in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (int8
    storage: +-127 for 8 bits, +-63 for 7); int32 bias at ``in_scale * w_scale``."""
    qmax = 2 ** (bits - 1) - 1
    w = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
    ws = np.abs(w).max(axis=1) / qmax
    ws[ws == 0] = 1.0
    wq = np.clip(np.round(w / ws[:, None]), -qmax, qmax).astype(np.int8)
    bias = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    bq = np.clip(np.round(bias / (in_scale * ws)), -(2**31), 2**31 - 1).astype(np.int32)
    return wq, bq, ws.astype(np.float32)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


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
    from timm.models.swin_transformer import SwinTransformer

    if isinstance(model, SwinTransformer):
        from intvit.quant.shadow_swin import shadow_forward_swin, swin_arch

        arch, forward = swin_arch(model), shadow_forward_swin
    else:
        arch, forward = vit_arch(model), shadow_forward
    from intvit.models.gelu_less import mlp_activation

    if mlp_activation(model) == "relu" and config.gelu != "relu":
        raise ValueError(
            f"the model is GELU-less (ReLU MLPs); its integer model needs gelu='relu', "
            f"not {config.gelu!r}"
        )
    images = np.asarray(images, dtype=np.float32)
    if images.shape[0] == 0:
        raise ValueError("the calibration set is empty; give at least one image")
    expected = (arch["in_chans"], arch["img_size"], arch["img_size"])
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
    act_qmax = 255 if config.gelu == "relu" else 127
    scales = {}
    for name, obs in observers.items():
        last = name.split(".")[-1]
        qmax = res_qmax if last.startswith("res") or last == "pe" else 127
        qmax = act_qmax if last == "gelu" else qmax
        scales[name] = max(obs.amax(qmax), 1e-8) / qmax

    if arch["family"] == "swin":
        tensors = _quantize_swin_weights(model, scales, config.weight_bits)
        blocks = sum(len(st["blocks"]) for st in arch["stages"])
    else:
        tensors = _quantize_weights(model, arch, scales, config.weight_bits)
        blocks = arch["depth"]
    m_star = []
    if config.softmax == "edge":
        for i in range(blocks):
            name = f"b{i}.scores"
            s = scales[name]
            q = np.clip(np.round(np.concatenate(rows[name]) / s), -128, 127).astype(np.int8)
            m_star.append(select_m_star(q, s, config.softmax_bits, config.m_star_method))
    return IntModel(arch, config, scales, tensors, m_star, source)


def _quantize_weights(
    model, arch: dict, scales: dict[str, float], bits: int
) -> dict[str, np.ndarray]:
    t: dict[str, np.ndarray] = {}
    _put_linear(t, "pe", model.patch_embed.proj, scales["input"], bits)
    s0 = scales["res0"]
    prefix = [_np(model.cls_token)]
    if arch["distilled"]:
        prefix.append(_np(model.dist_token))
    lim = 2**31 - 1
    t["cls_q"] = np.clip(np.round(np.concatenate(prefix, axis=1) / s0), -lim, lim).astype(np.int32)
    t["pos_q"] = np.clip(np.round(_np(model.pos_embed) / s0), -lim, lim).astype(np.int32)
    for i, blk in enumerate(model.blocks):
        _put_block(t, f"b{i}.", blk, scales, bits)
    _put_norm(t, "lnf", model.norm)
    _put_linear(t, "head", model.head, scales["lnf"], bits)
    if arch["distilled"]:
        _put_linear(t, "head_dist", model.head_dist, scales["lnf"], bits)
    return t


def _put_linear(t, name, lin, in_scale, bits: int) -> None:
    b = None if lin.bias is None else _np(lin.bias)
    w, b, ws = quantize_weight(_np(lin.weight), b, in_scale, bits)
    t[f"{name}.w"], t[f"{name}.b"], t[f"{name}.ws"] = w, b, ws


def _put_norm(t, name, norm) -> None:
    t[f"{name}.gamma"] = _np(norm.weight).astype(np.float32)
    t[f"{name}.beta"] = _np(norm.bias).astype(np.float32)


def _put_block(t, p: str, blk, scales: dict[str, float], bits: int) -> None:
    """A ViT or Swin block: its four GEMMs (each at its input's scale) and two LayerNorms."""
    layers = {"qkv": blk.attn.qkv, "proj": blk.attn.proj, "fc1": blk.mlp.fc1, "fc2": blk.mlp.fc2}
    inputs = {"qkv": "ln1", "proj": "ctx", "fc1": "ln2", "fc2": "gelu"}
    for name in LINEARS:
        _put_linear(t, p + name, layers[name], scales[p + inputs[name]], bits)
    _put_norm(t, p + "ln1", blk.norm1)
    _put_norm(t, p + "ln2", blk.norm2)


def _quantize_swin_weights(model, scales: dict[str, float], bits: int) -> dict[str, np.ndarray]:
    import torch

    t: dict[str, np.ndarray] = {}
    _put_linear(t, "pe", model.patch_embed.proj, scales["input"], bits)
    _put_norm(t, "pe_ln", model.patch_embed.norm)
    i = 0
    for s, st in enumerate(model.layers):
        if not isinstance(st.downsample, torch.nn.Identity):
            _put_norm(t, f"st{s}.merge_ln", st.downsample.norm)
            merge_scale = scales[f"st{s}.merge_ln"]
            _put_linear(t, f"st{s}.reduce", st.downsample.reduction, merge_scale, bits)
        for blk in st.blocks:
            p = f"b{i}."
            _put_block(t, p, blk, scales, bits)
            t[p + "relbias"] = _np(blk.attn._get_rel_pos_bias()[0]).astype(np.float32)
            if blk.attn_mask is not None:
                t[p + "mask"] = (_np(blk.attn_mask) != 0).astype(np.int8)
            i += 1
    _put_norm(t, "lnf", model.norm)
    _put_linear(t, "head", model.head.fc, scales["pool"], bits)
    return t
