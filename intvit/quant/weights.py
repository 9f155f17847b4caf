"""Integer weights of a float model at the calibrated scales: int8 per output channel, int32
biases at ``S_in * S_w``, int32 prefix and position tokens, float32 LayerNorm affines."""

from __future__ import annotations

import numpy as np

from intvit.quant.arch import LINEARS, SwinArch, VitArch
from intvit.quant.shadow import is_low_rank


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


def put_linear(t, name, lin, in_scale, bits: int, scales: dict[str, float] | None = None) -> None:
    """``name.w/.b/.ws`` of ``lin`` at ``in_scale``; a low-rank linear also ``name.lr.*``
    (its first factor), its second factor at the rank-r intermediate's scale
    ``scales[name + "_lr"]``."""
    if is_low_rank(lin):
        put_linear(t, name + ".lr", lin.down, in_scale, bits)
        lin, in_scale = lin.up, scales[name + "_lr"]
    b = None if lin.bias is None else _np(lin.bias)
    w, b, ws = quantize_weight(_np(lin.weight), b, in_scale, bits)
    t[f"{name}.w"], t[f"{name}.b"], t[f"{name}.ws"] = w, b, ws


def put_norm(t, name, norm) -> None:
    t[f"{name}.gamma"] = _np(norm.weight).astype(np.float32)
    t[f"{name}.beta"] = _np(norm.bias).astype(np.float32)


#: The activation point each block linear reads.
LINEAR_INPUTS = {"qkv": "ln1", "proj": "ctx", "fc1": "ln2", "fc2": "gelu"}


def put_block(t, p: str, blk, scales: dict[str, float], bits: int) -> None:
    """A ViT or Swin block: its four GEMMs (each at its input's scale) and two LayerNorms."""
    layers = {"qkv": blk.attn.qkv, "proj": blk.attn.proj, "fc1": blk.mlp.fc1, "fc2": blk.mlp.fc2}
    for name in LINEARS:
        put_linear(t, p + name, layers[name], scales[p + LINEAR_INPUTS[name]], bits, scales)
    put_norm(t, p + "ln1", blk.norm1)
    put_norm(t, p + "ln2", blk.norm2)


def quantize_vit_weights(
    model, arch: VitArch, scales: dict[str, float], bits: int
) -> dict[str, np.ndarray]:
    t: dict[str, np.ndarray] = {}
    put_linear(t, "pe", model.patch_embed.proj, scales["input"], bits)
    s0 = scales["res0"]
    prefix = [_np(model.cls_token)]
    if arch.distilled:
        prefix.append(_np(model.dist_token))
    lim = 2**31 - 1
    t["cls_q"] = np.clip(np.round(np.concatenate(prefix, axis=1) / s0), -lim, lim).astype(np.int32)
    t["pos_q"] = np.clip(np.round(_np(model.pos_embed) / s0), -lim, lim).astype(np.int32)
    for i, blk in enumerate(model.blocks):
        put_block(t, f"b{i}.", blk, scales, bits)
    put_norm(t, "lnf", model.norm)
    put_linear(t, "head", model.head, scales["lnf"], bits)
    if arch.distilled:
        put_linear(t, "head_dist", model.head_dist, scales["lnf"], bits)
    return t


def quantize_swin_weights(
    model, arch: SwinArch, scales: dict[str, float], bits: int
) -> dict[str, np.ndarray]:
    import torch

    t: dict[str, np.ndarray] = {}
    put_linear(t, "pe", model.patch_embed.proj, scales["input"], bits)
    put_norm(t, "pe_ln", model.patch_embed.norm)
    i = 0
    for s, st in enumerate(model.layers):
        if not isinstance(st.downsample, torch.nn.Identity):
            put_norm(t, f"st{s}.merge_ln", st.downsample.norm)
            merge_scale = scales[f"st{s}.merge_ln"]
            put_linear(t, f"st{s}.reduce", st.downsample.reduction, merge_scale, bits)
        for blk in st.blocks:
            p = f"b{i}."
            put_block(t, p, blk, scales, bits)
            t[p + "relbias"] = _np(blk.attn._get_rel_pos_bias()[0]).astype(np.float32)
            if blk.attn_mask is not None:
                t[p + "mask"] = (_np(blk.attn_mask) != 0).astype(np.int8)
            i += 1
    put_norm(t, "lnf", model.norm)
    put_linear(t, "head", model.head.fc, scales["pool"], bits)
    return t
