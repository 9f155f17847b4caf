"""A float forward of a ViT (timm's VisionTransformer and distilled DeiT, or intvit's
heterogeneous ViT, :mod:`intvit.models.hetero_vit`) that exposes every tensor the integer model
quantizes. It must equal ``model(x)`` exactly (tested); calibration observes it.

Points (per block ``i``): ``b{i}.ln1``, ``.q``, ``.k``, ``.v``, ``.scores`` (``(q / sqrt(d))
k^T``, as timm computes it), ``.ctx``, ``.res1``, ``.ln2``, ``.fc1``, ``.gelu``, ``.res2``; for
a low-rank linear ``<layer>``, its rank-r intermediate ``b{i}.<layer>_lr``; and ``input``,
``res0``, ``lnf``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from intvit.quant.arch import VitArch


def is_low_rank(linear) -> bool:
    """A factorized linear (``down`` then ``up``, see ``models.hetero_vit.LowRankLinear``)."""
    return hasattr(linear, "down") and hasattr(linear, "up")


def vit_arch(model) -> VitArch:
    """The architecture of a float ViT, with a clear error for what the integer model lacks:
    the arch a heterogeneous ViT carries, or timm's (every block alike)."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(getattr(model, "arch", None), VitArch):
        return model.arch
    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"{type(model).__name__} is not a ViT/DeiT; integer conversion supports "
            "timm VisionTransformer, VisionTransformerDistilled, SwinTransformer and "
            "intvit's heterogeneous ViT"
        )
    blk = model.blocks[0]
    unsupported = []
    if model.global_pool != "token":
        unsupported.append(f"global_pool={model.global_pool!r}")
    if not isinstance(blk.ls1, torch.nn.Identity):
        unsupported.append("layer scale")
    if not isinstance(blk.attn.q_norm, torch.nn.Identity):
        unsupported.append("qk norm")
    if not isinstance(model.norm_pre, torch.nn.Identity):
        unsupported.append("pre-norm")
    if not isinstance(getattr(blk.attn, "norm", torch.nn.Identity()), torch.nn.Identity):
        unsupported.append("attention output norm")
    if unsupported:
        raise ValueError(f"unsupported ViT features: {', '.join(unsupported)}")
    pe = model.patch_embed
    return VitArch.uniform(
        img_size=int(pe.img_size[0]),
        patch_size=int(pe.patch_size[0]),
        in_chans=int(pe.proj.in_channels),
        dim=int(model.embed_dim),
        depth=len(model.blocks),
        heads=int(blk.attn.num_heads),
        mlp_hidden=int(blk.mlp.fc1.out_features),
        num_classes=int(model.num_classes),
        distilled=bool(hasattr(model, "head_dist")),
    )


Observe = Callable[[str, torch.Tensor], None]


def observed_linear(see, point: str, linear, x: torch.Tensor) -> torch.Tensor:
    """``linear(x)``; a low-rank one as its two factors, its intermediate seen at ``point``."""
    if is_low_rank(linear):
        return linear.up(see(point + "_lr", linear.down(x)))
    return linear(x)


def shadow_forward(model, x: torch.Tensor, observe: Observe | None = None) -> torch.Tensor:
    """Eval-mode logits of ``model`` on ``x``, calling ``observe(point, tensor)`` on the way."""

    def see(name: str, t: torch.Tensor) -> torch.Tensor:
        if observe is not None:
            observe(name, t.detach())
        return t

    arch = vit_arch(model)
    see("input", x)
    b = x.shape[0]
    h = model.patch_embed(x)
    prefix = [model.cls_token.expand(b, -1, -1)]
    if arch.distilled:
        prefix.append(model.dist_token.expand(b, -1, -1))
    h = torch.cat([*prefix, h], dim=1) + model.pos_embed
    see("res0", h)
    for i, (blk, ba) in enumerate(zip(model.blocks, arch.blocks, strict=True)):
        p = f"b{i}."
        heads, d = ba.heads, ba.head_dim
        a = see(p + "ln1", blk.norm1(h))
        qkv = observed_linear(see, p + "qkv", blk.attn.qkv, a)
        qkv = qkv.reshape(b, -1, 3, heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = see(p + "q", qkv[0]), see(p + "k", qkv[1]), see(p + "v", qkv[2])
        scores = see(p + "scores", (q * d**-0.5) @ k.transpose(-2, -1))
        ctx = see(p + "ctx", scores.softmax(dim=-1) @ v)
        ctx = ctx.transpose(1, 2).reshape(b, -1, ba.attn_dim)
        h = see(p + "res1", h + observed_linear(see, p + "proj", blk.attn.proj, ctx))
        m = see(p + "ln2", blk.norm2(h))
        f = see(p + "fc1", observed_linear(see, p + "fc1", blk.mlp.fc1, m))
        g = see(p + "gelu", blk.mlp.act(f))
        h = see(p + "res2", h + observed_linear(see, p + "fc2", blk.mlp.fc2, g))
    h = see("lnf", model.norm(h))
    logits = model.head(h[:, 0])
    if arch.distilled:
        logits = (logits + model.head_dist(h[:, 1])) / 2
    return logits
