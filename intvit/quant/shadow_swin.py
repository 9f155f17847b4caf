"""A float forward of timm's SwinTransformer exposing every tensor the integer Swin quantizes.

Points: ``input``, ``pe`` (patch conv output), ``res0`` (after the patch norm); per stage ``s``
with patch merging: ``st{s}.merge_ln``, ``st{s}.res_in``; per block ``i`` (counted over all
stages): ``b{i}.ln1``, ``.q``, ``.k``, ``.v``, ``.scores`` (``q k^T * scale`` plus the relative
position bias, before the shift mask), ``.ctx``, ``.res1``, ``.ln2``, ``.fc1``, ``.gelu``,
``.res2``; then ``lnf`` and ``pool`` (the token mean).
"""

from __future__ import annotations

import torch

from intvit.quant.arch import SwinArch, SwinBlock, SwinStage
from intvit.quant.shadow import Observe


def swin_arch(model) -> SwinArch:
    from timm.models.swin_transformer import PatchMerging, SwinTransformer

    if not isinstance(model, SwinTransformer):
        raise ValueError(f"{type(model).__name__} is not a timm SwinTransformer")
    pe = model.patch_embed
    grid = int(pe.img_size[0]) // int(pe.patch_size[0])
    stages = []
    for st in model.layers:
        merge = isinstance(st.downsample, PatchMerging)
        if merge:
            grid //= 2
        blocks = []
        for blk in st.blocks:
            ws, sh = int(blk.window_size[0]), int(blk.shift_size[0])
            if grid % ws:
                raise ValueError(f"Swin grid {grid} is not divisible by window {ws}")
            blocks.append(SwinBlock(ws, sh))
        stages.append(
            SwinStage(
                merge=merge,
                dim=int(st.blocks[0].norm1.normalized_shape[0]),
                grid=grid,
                heads=int(st.blocks[0].attn.num_heads),
                mlp_hidden=int(st.blocks[0].mlp.fc1.out_features),
                blocks=tuple(blocks),
            )
        )
    if model.head.global_pool.pool_type != "avg":
        raise ValueError("only average-pooled Swin heads are supported")
    return SwinArch(
        img_size=int(pe.img_size[0]),
        patch_size=int(pe.patch_size[0]),
        in_chans=int(pe.proj.in_channels),
        embed_dim=int(pe.proj.out_channels),
        num_classes=int(model.num_classes),
        stages=tuple(stages),
    )


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    c = x.shape[-1]
    b = x.shape[0] // ((h // ws) * (w // ws))
    x = x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shadow_forward_swin(model, x: torch.Tensor, observe: Observe | None = None) -> torch.Tensor:
    def see(name, t):
        if observe is not None:
            observe(name, t.detach())
        return t

    swin_arch(model)
    see("input", x)
    pe = model.patch_embed
    h = see("pe", pe.proj(x).permute(0, 2, 3, 1))
    h = see("res0", pe.norm(h))
    i = 0
    for s, st in enumerate(model.layers):
        if not isinstance(st.downsample, torch.nn.Identity):
            b_, hh, ww, c = h.shape
            m = h.reshape(b_, hh // 2, 2, ww // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
            m = see(f"st{s}.merge_ln", st.downsample.norm(m))
            h = see(f"st{s}.res_in", st.downsample.reduction(m))
        for blk in st.blocks:
            h = _block(blk, h, f"b{i}.", see)
            i += 1
    h = see("lnf", model.norm(h))
    pooled = see("pool", h.mean(dim=(1, 2)))
    return model.head.fc(pooled)


def _block(blk, x, p, see):
    _, hh, ww, c = x.shape
    ws, sh = int(blk.window_size[0]), int(blk.shift_size[0])
    attn = blk.attn
    heads = attn.num_heads
    d = c // heads
    a = see(p + "ln1", blk.norm1(x))
    if sh:
        a = torch.roll(a, shifts=(-sh, -sh), dims=(1, 2))
    win = window_partition(a, ws)
    n = ws * ws
    qkv = attn.qkv(win).reshape(-1, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = see(p + "q", qkv[0]), see(p + "k", qkv[1]), see(p + "v", qkv[2])
    scores = see(p + "scores", (q * attn.scale) @ k.transpose(-2, -1) + attn._get_rel_pos_bias())
    if blk.attn_mask is not None:
        nw = blk.attn_mask.shape[0]
        scores = scores.view(-1, nw, heads, n, n) + blk.attn_mask.unsqueeze(1).unsqueeze(0)
        scores = scores.view(-1, heads, n, n)
    ctx = see(p + "ctx", scores.softmax(dim=-1) @ v)
    out = attn.proj(ctx.transpose(1, 2).reshape(-1, n, c))
    out = window_reverse(out, ws, hh, ww)
    if sh:
        out = torch.roll(out, shifts=(sh, sh), dims=(1, 2))
    x = see(p + "res1", x + out)
    m = see(p + "ln2", blk.norm2(x))
    f = see(p + "fc1", blk.mlp.fc1(m))
    g = see(p + "gelu", blk.mlp.act(f))
    return see(p + "res2", x + blk.mlp.fc2(g))
